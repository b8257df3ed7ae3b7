/* server/dispatch.c: from one request frame to one queued response.
 *
 * Owns the translation between the wire (ticketq.proto, decoded by protobuf-c into the
 * per-request arena) and the state machine (struct tq_cmd for mutations, tq_state_* queries
 * for reads). Every request goes through the same gate, in this order:
 *   1. decode (malformed bytes: INVALID_ARGUMENT, the stream stays in sync);
 *   2. authenticate: Auth first; afterwards the token is re-checked on every request, so a
 *      revocation takes effect at once on open connections;
 *   3. authorise with the role table (auth.c) and resolve the tenant: a server admin names it
 *      in Request.tenant_id, everyone else is pinned to the token's tenant, and an id of
 *      another tenant answers exactly like a missing one (the state guarantees it for ids; the
 *      tenant id itself is checked here);
 *   4. mutations: tq_dispatch_run_cmd (room in the log first, then apply, then append); a
 *      Batch of only Ingests gates and builds all its ops first, then applies them with the
 *      state's prefetch running ahead (ingest_many), and so does a run of single Ingest
 *      requests collected across the connections of one turn (tq_dispatch_flush);
 *      reads: query the state, bodies come from the log (or from the not-yet-durable copies
 *      kept in srv->staged until their batch is acknowledged);
 *   5. queue the response on the connection with wait_lsn = the highest LSN staged so far:
 *      conn.c sends it only once that LSN is acknowledged (durable).
 * Bytes from the network are validated here (enums, lengths, counts) and never asserted on.
 */
#include "auth.h"
#include "events_codec.h"
#include "reqdec.h"
#include "server.h"
#include "sha256.h"
#include "snapshot.h"
#include "ticketq.pb-c.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- request context -------------------------------------------------------------------- */

struct req {
    struct tq_server *srv;
    struct tq_conn *conn;
    struct tq_session *sess;
    const Ticketq__Request *msg;
    Ticketq__Response *resp;
    const struct tq_auth_rule *rule;
    uint64_t tenant_id; /* resolved tenant (0 = none / all) */
    bool in_batch;
    bool defer; /* handler asks to retry the frame later */
    bool held;  /* the response is queued later (SnapshotNow: snapshot_answer) */
    uint64_t start_us;
};

static struct tq_arena *ARENA(struct req *r) {
    return &r->srv->arena;
}

static void *aalloc(struct req *r, size_t size) {
    void *p = tq_arena_alloc(ARENA(r), size);
    memset(p, 0, size);
    return p;
}

int tq_dispatch_wire_code(enum tq_err code) {
    switch (code) {
    case TQ_OK: return TICKETQ__ERROR_CODE__OK;
    case TQ_ERR_INVALID_ARGUMENT: return TICKETQ__ERROR_CODE__INVALID_ARGUMENT;
    case TQ_ERR_NOT_FOUND: return TICKETQ__ERROR_CODE__NOT_FOUND;
    case TQ_ERR_FAILED_PRECONDITION: return TICKETQ__ERROR_CODE__FAILED_PRECONDITION;
    case TQ_ERR_UNAUTHENTICATED: return TICKETQ__ERROR_CODE__UNAUTHENTICATED;
    case TQ_ERR_PERMISSION_DENIED: return TICKETQ__ERROR_CODE__PERMISSION_DENIED;
    case TQ_ERR_RESOURCE_EXHAUSTED: return TICKETQ__ERROR_CODE__RESOURCE_EXHAUSTED;
    case TQ_ERR_UNAVAILABLE: return TICKETQ__ERROR_CODE__UNAVAILABLE;
    case TQ_ERR_ALREADY_EXISTS: return TICKETQ__ERROR_CODE__FAILED_PRECONDITION;
    case TQ_ERR_NO_SPACE: return TICKETQ__ERROR_CODE__RESOURCE_EXHAUSTED;
    case TQ_ERR_CORRUPT:
    case TQ_ERR_IO:
    case TQ_ERR_INTERNAL: return TICKETQ__ERROR_CODE__INTERNAL;
    }
    return TICKETQ__ERROR_CODE__INTERNAL;
}

static Ticketq__Error *make_error(struct tq_arena *arena, enum tq_err code, const char *msg) {
    Ticketq__Error *e = tq_arena_alloc(arena, sizeof(*e));
    ticketq__error__init(e);
    e->code = (Ticketq__ErrorCode)tq_dispatch_wire_code(code);
    size_t n = strlen(msg);
    e->message = tq_arena_memdup(arena, msg, n + 1);
    return e;
}

/* Sets an error on the response; returns the code so handlers can `return fail(...)`. */
static enum tq_err fail(struct req *r, enum tq_err code, const char *fmt, ...) TQ_PRINTF(3, 4);
static enum tq_err fail(struct req *r, enum tq_err code, const char *fmt, ...) {
    char msg[TQ_ERROR_MSG_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->resp->error = make_error(ARENA(r), code, msg);
    r->resp->result_case = TICKETQ__RESPONSE__RESULT__NOT_SET;
    return code;
}

static enum tq_err fail_err(struct req *r, const struct tq_error *error) {
    return fail(r, error->code, "%s", error->msg);
}

static struct tq_str S(const char *s) {
    return (struct tq_str){.ptr = s ? s : "", .len = s ? (uint32_t)strnlen(s, UINT32_MAX) : 0};
}

static char *
cstr(struct req *r, struct tq_str s) {
    char *p = tq_arena_alloc(ARENA(r), (size_t)s.len + 1);
    if (s.len > 0) memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}

/* Wire enums are plain integers after protobuf-c decoding: range-check every one. */
static bool ok_channel(int v) {
    return v >= 0 && v < TQ_CHANNEL_COUNT;
}
static bool ok_status(int v) {
    return v >= 0 && v < TQ_STATUS_COUNT;
}
static bool ok_priority(int v) {
    return v >= 0 && v < TQ_PRIORITY_COUNT;
}
static bool ok_presence(int v) {
    return v >= TQ_PRESENCE_OFFLINE && v <= TQ_PRESENCE_ONLINE;
}
static bool ok_role(int v) {
    return v >= TQ_ROLE_SERVER_ADMIN && v <= TQ_ROLE_INTEGRATION;
}

/* ---- the command path ------------------------------------------------------------------- */

static void collect_event(void *ctx, const struct tq_event *event) {
    struct tq_server *srv = ctx;
    if (srv->ev_count == srv->ev_cap) {
        uint32_t cap = srv->ev_cap ? srv->ev_cap * 2 : 64;
        srv->ev = tq_xrealloc(srv->ev, srv->ev_cap * sizeof(*srv->ev), cap * sizeof(*srv->ev));
        srv->ev_cap = cap;
    }
    srv->ev[srv->ev_count++] = *event;
}

static void ensure_enc(struct tq_server *srv, size_t size) {
    if (srv->enc_cap >= size) return;
    size_t cap = srv->enc_cap ? srv->enc_cap : 64 * 1024;
    while (cap < size)
        cap *= 2;
    srv->enc_buf = tq_xrealloc(srv->enc_buf, srv->enc_cap, cap);
    srv->enc_cap = cap;
}

/* Keeps every staged command record (encoded in place by staged_encode, which the log then
 * copies from) until its batch is acknowledged, so reads that
 * need a body (TicketGet, OutboxTake) can be served before the record is readable from the
 * log; the response itself still waits for the acknowledgement. The copies live back to back
 * in one growing buffer (no allocation per request once warm); entries are in LSN order, so
 * pruning removes a prefix: it only advances staged_head, and the dead prefix is reclaimed
 * when the arrays are full (staged_compact), not on every turn. */
static void staged_compact(struct tq_server *srv) {
    uint32_t head = srv->staged_head;
    if (head == 0) return;
    TQ_ASSERT(head < srv->staged_count); /* an empty list is rewound by the prune */
    size_t base = srv->staged[head].offset;
    memmove(srv->staged_bytes, srv->staged_bytes + base, srv->staged_bytes_len - base);
    srv->staged_bytes_len -= base;
    uint32_t live = srv->staged_count - head;
    memmove(srv->staged, srv->staged + head, live * sizeof(*srv->staged));
    for (uint32_t i = 0; i < live; i++)
        srv->staged[i].offset -= base;
    srv->staged_count = live;
    srv->staged_head = 0;
}

/* Makes room for len more staged bytes (compacting or growing). */
static void staged_make_room(struct tq_server *srv, size_t len) {
    if (srv->staged_count < srv->staged_cap &&
        srv->staged_bytes_len + len <= srv->staged_bytes_cap) {
        return;
    }
    staged_compact(srv);
    /* Grow when more than half is still live after compaction, so compactions stay rare
     * (each moves at most as much as was appended since the previous one). */
    if (srv->staged_count * 2 >= srv->staged_cap) {
        uint32_t cap = srv->staged_cap ? srv->staged_cap * 2 : 256;
        srv->staged = tq_xrealloc(srv->staged, srv->staged_cap * sizeof(*srv->staged),
                                  cap * sizeof(*srv->staged));
        srv->staged_cap = cap;
    }
    if (srv->staged_bytes_len + len > srv->staged_bytes_cap ||
        srv->staged_bytes_len * 2 >= srv->staged_bytes_cap) {
        size_t cap = srv->staged_bytes_cap ? srv->staged_bytes_cap : 256 * 1024;
        while (cap < srv->staged_bytes_len + len || cap <= srv->staged_bytes_len * 2)
            cap *= 2;
        srv->staged_bytes = tq_xrealloc(srv->staged_bytes, srv->staged_bytes_cap, cap);
        srv->staged_bytes_cap = cap;
    }
    TQ_ASSERT(srv->staged_count < srv->staged_cap);
    TQ_ASSERT(srv->staged_bytes_len + len <= srv->staged_bytes_cap);
}

/* Encodes cmd straight into the free tail of the staged bytes (the record is kept there
 * until acknowledged, and the log copies it from there: one copy fewer than encoding into a
 * scratch buffer and keeping a copy of that). Returns the record's bytes and sets *len_out,
 * or returns NULL with *len_out = its size when the command is over the record limit. The
 * bytes become a staged record only with staged_commit. */
static uint8_t *staged_encode(struct tq_server *srv, const struct tq_cmd *cmd, size_t *len_out) {
    size_t room = srv->staged_bytes_cap - srv->staged_bytes_len;
    if (room > TQ_RECORD_BYTES_DEFAULT_MAX) room = TQ_RECORD_BYTES_DEFAULT_MAX;
    size_t n = 0;
    if (srv->staged_count < srv->staged_cap && room > 0) {
        n = tq_cmd_encode(cmd, srv->staged_bytes + srv->staged_bytes_len, room);
    }
    if (n == 0) { /* it did not fit what is left: size it, make room, encode again */
        size_t size = tq_cmd_encoded_size(cmd);
        if (size > TQ_RECORD_BYTES_DEFAULT_MAX) {
            *len_out = size;
            return NULL;
        }
        staged_make_room(srv, size);
        n = tq_cmd_encode(cmd, srv->staged_bytes + srv->staged_bytes_len, size);
        TQ_ASSERT(n == size);
    }
    *len_out = n;
    return srv->staged_bytes + srv->staged_bytes_len;
}

/* Keeps the record staged_encode just wrote as the staged copy of lsn. */
static void staged_commit(struct tq_server *srv, uint64_t lsn, size_t len) {
    TQ_ASSERT(srv->staged_count < srv->staged_cap);
    TQ_ASSERT(srv->staged_bytes_len + len <= srv->staged_bytes_cap);
    TQ_ASSERT(srv->staged_count == 0 || srv->staged[srv->staged_count - 1].lsn < lsn);
    srv->staged[srv->staged_count++] =
        (struct tq_staged_record){.lsn = lsn, .offset = srv->staged_bytes_len, .len = len};
    srv->staged_bytes_len += len;
}

void tq_dispatch_prune_staged(struct tq_server *srv, uint64_t acked_lsn) {
    TQ_ASSERT(srv->staged_head <= srv->staged_count);
    while (srv->staged_head < srv->staged_count && srv->staged[srv->staged_head].lsn <= acked_lsn) {
        srv->staged_head++;
    }
    if (srv->staged_head == srv->staged_count) { /* all acknowledged: rewind for free */
        srv->staged_head = srv->staged_count = 0;
        srv->staged_bytes_len = 0;
    }
}

uint64_t tq_dispatch_send_queue_max(const struct tq_server *srv) {
    uint64_t q = TQ_SEND_QUEUE_BYTES_MAX;
    uint64_t f = 2ull * srv->cfg.max_frame + srv->cfg.subscriber_buffer;
    return q > f ? q : f;
}

/* tq_dispatch_run_cmd with the prefetch hint of cmd (NULL: none; else the hint that
 * tq_state_prefetch's stage 0 filled for this very cmd, see ingest_many). */
static enum tq_err run_cmd(struct tq_server *srv, struct tq_cmd *cmd,
                           const struct tq_state_prefetch_hint *hint, struct tq_cmd_result *result,
                           uint64_t *lsn_out, struct tq_error *error) {
    TQ_ASSERT(cmd->type >= TQ_CMD_TENANT_CREATE && cmd->type <= TQ_CMD_TYPE_MAX);
    /* One clock read per Batch, not per op: clock_gettime was ~1% of a batched ingest's
     * cycles. The ops of a batch are applied within the same turn, so they share a time. */
    uint64_t now = srv->batch_now_ms != 0 ? srv->batch_now_ms : tq_now_ms();
    if (now < srv->last_now_ms) now = srv->last_now_ms; /* time never goes backwards */
    cmd->now_ms = now;
    /* Encode first (no side effects until staged_commit): sizing every command up front
     * walked it once more per message; the exact size is computed only when the encoding
     * does not fit the staged buffer's free tail. */
    size_t n = 0;
    const uint8_t *rec = staged_encode(srv, cmd, &n);
    if (rec == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "command of %zu bytes exceeds the record limit of %u bytes", n,
                            TQ_RECORD_BYTES_DEFAULT_MAX);
    }
    size_t check = n + TQ_EVENTS_RECORD_RESERVE_BYTES;
    if (check > TQ_RECORD_BYTES_DEFAULT_MAX) check = n;
    if (!tq_log_can_append(srv->log, (uint32_t)check)) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED,
                            "the log cannot take this write now (disk full or commit backlog); "
                            "nothing was applied, retry later");
    }
    uint64_t lsn = tq_log_next_lsn(srv->log);
    TQ_ASSERT(lsn > srv->lsn_staged);
    srv->ev_count = 0;
    struct tq_event_sink sink = {.emit = collect_event, .ctx = srv};
    enum tq_err err = tq_state_apply_hinted(srv->state, lsn, cmd, hint, result, &sink, error);
    if (err != TQ_OK) {
        srv->ev_count = 0;
        return err;
    }
    uint64_t got = 0;
    struct tq_error lerr;
    if (tq_log_append(srv->log, TQ_RECORD_TYPE_CMD, rec, (uint32_t)n, &got, &lerr) != TQ_OK) {
        /* The state already changed: continuing would serve state the log does not have. */
        tq_fatal("log refused command record %" PRIu64 " after apply: %s", lsn, lerr.msg);
    }
    TQ_ASSERT(got == lsn);
    staged_commit(srv, lsn, n);
    srv->lsn_staged = lsn;
    srv->last_now_ms = now;
    *lsn_out = lsn;

    /* The events record(s), right after the command record. */
    uint32_t done = 0;
    while (done < srv->ev_count) {
        uint32_t count = srv->ev_count - done;
        if (count > TQ_EVENTS_PER_RECORD_MAX) count = TQ_EVENTS_PER_RECORD_MAX;
        for (uint32_t i = 0; i < count; i++)
            srv->ev[done + i].lsn = lsn;
        size_t cap = tq_events_encoded_size_max(count);
        ensure_enc(srv, cap);
        size_t en = tq_events_encode(lsn, srv->ev + done, count, srv->enc_buf, srv->enc_cap);
        TQ_ASSERT(en > 0);
        uint64_t ev_lsn = 0;
        if (en > TQ_RECORD_BYTES_DEFAULT_MAX ||
            tq_log_append(srv->log, TQ_RECORD_TYPE_EVENTS, srv->enc_buf, (uint32_t)en, &ev_lsn,
                          &lerr) != TQ_OK) {
            /* Live subscribers still get them; catch-up from the log will not. */
            fprintf(stderr, "ticketqd: events of record %" PRIu64 " not logged (%u events)\n", lsn,
                    count);
            tq_metrics_count(srv->metrics, TQ_METRIC_EVENTS_UNLOGGED);
            ev_lsn = lsn;
        } else {
            srv->lsn_staged = ev_lsn;
        }
        tq_sub_stage_events(srv, srv->ev + done, count, ev_lsn);
        done += count;
    }
    srv->ev_count = 0;
    tq_metrics_count(srv->metrics, TQ_METRIC_COMMANDS);
    return TQ_OK;
}

enum tq_err tq_dispatch_run_cmd(struct tq_server *srv, struct tq_cmd *cmd,
                                struct tq_cmd_result *result, uint64_t *lsn_out,
                                struct tq_error *error) {
    return run_cmd(srv, cmd, NULL, result, lsn_out, error);
}

static Ticketq__Ids *ids_of(struct req *r, const struct tq_cmd_result *res) {
    Ticketq__Ids *ids = tq_arena_alloc(ARENA(r), sizeof(*ids)); /* init sets every field */
    ticketq__ids__init(ids);
#define ID(f)                                                                                      \
    do {                                                                                           \
        if (res->f != 0) {                                                                         \
            ids->has_##f = true;                                                                   \
            ids->f = res->f;                                                                       \
        }                                                                                          \
    } while (0)
    ID(tenant_id);
    ID(token_id);
    ID(queue_id);
    ID(agent_id);
    ID(customer_id);
    ID(ticket_id);
    ID(message_id);
    ID(ticket_number);
#undef ID
#define FLAG(f)                                                                                    \
    do {                                                                                           \
        if (res->f) {                                                                              \
            ids->has_##f = true;                                                                   \
            ids->f = true;                                                                         \
        }                                                                                          \
    } while (0)
    FLAG(customer_created);
    FLAG(ticket_created);
    FLAG(duplicate);
    FLAG(over_capacity);
#undef FLAG
    return ids;
}

/* Runs a command for a request; on success fills Ids and the LSN into the response. hint:
 * as run_cmd's. */
static enum tq_err mutate_hinted(struct req *r, struct tq_cmd *cmd,
                                 const struct tq_state_prefetch_hint *hint,
                                 struct tq_cmd_result *res_out) {
    struct tq_cmd_result res;
    memset(&res, 0, sizeof(res));
    struct tq_error error;
    tq_error_clear(&error);
    uint64_t lsn = 0;
    if (cmd->tenant_id == 0 && cmd->type != TQ_CMD_TENANT_CREATE) cmd->tenant_id = r->tenant_id;
    enum tq_err err = run_cmd(r->srv, cmd, hint, &res, &lsn, &error);
    if (err != TQ_OK) return fail_err(r, &error);
    r->resp->has_lsn = true;
    r->resp->lsn = lsn;
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_IDS;
    r->resp->ids = ids_of(r, &res);
    if (res_out != NULL) *res_out = res;
    return TQ_OK;
}

static enum tq_err mutate(struct req *r, struct tq_cmd *cmd, struct tq_cmd_result *res_out) {
    return mutate_hinted(r, cmd, NULL, res_out);
}

static struct tq_cmd new_cmd(struct req *r, enum tq_cmd_type type) {
    struct tq_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = type;
    cmd.tenant_id = r->tenant_id;
    if (r->sess->role == TQ_ROLE_AGENT) cmd.actor_agent_id = r->sess->agent_id;
    return cmd;
}

/* The agent a request acts for: an agent token is pinned to its own agent. */
static enum tq_err acting_agent(struct req *r, bool has, uint64_t requested, bool required,
                                uint64_t *out) {
    if (r->sess->role == TQ_ROLE_AGENT) {
        if (has && requested != r->sess->agent_id) {
            return fail(r, TQ_ERR_PERMISSION_DENIED, "an agent token acts only as agent %" PRIu64,
                        r->sess->agent_id);
        }
        *out = r->sess->agent_id;
        return TQ_OK;
    }
    if (!has && required) return fail(r, TQ_ERR_INVALID_ARGUMENT, "agent_id is required");
    *out = has ? requested : 0;
    return TQ_OK;
}

static enum tq_err attachments_of(struct req *r, size_t n, Ticketq__Attachment **in,
                                  uint32_t *count_out, const struct tq_attachment **out) {
    if (n > TQ_ATTACHMENTS_PER_MESSAGE_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "%zu attachments exceed the limit of %u", n,
                    TQ_ATTACHMENTS_PER_MESSAGE_MAX);
    }
    struct tq_attachment *a = aalloc(r, (n ? n : 1) * sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        a[i].key = S(in[i]->key);
        a[i].name = S(in[i]->name);
        a[i].mime_type = S(in[i]->mime_type);
        a[i].size_bytes = in[i]->has_size_bytes ? in[i]->size_bytes : 0;
    }
    *count_out = (uint32_t)n;
    *out = a;
    return TQ_OK;
}

static enum tq_err strs_of(struct req *r, size_t n, char **in, uint32_t max, const char *what,
                           uint32_t *count_out, const struct tq_str **out) {
    if (n > max)
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "%zu %s exceed the limit of %u", n, what, max);
    struct tq_str *s = aalloc(r, (n ? n : 1) * sizeof(*s));
    for (size_t i = 0; i < n; i++)
        s[i] = S(in[i]);
    *count_out = (uint32_t)n;
    *out = s;
    return TQ_OK;
}

/* ---- reading records (message bodies) --------------------------------------------------- */

/* Fetches and decodes the command record at lsn (from the staged copies if it is not yet
 * acknowledged). The decoded strings live in the arena. */
static enum tq_err record_cmd(struct tq_server *srv, uint64_t lsn, struct tq_cmd *cmd,
                              struct tq_error *error) {
    if (lsn > tq_log_acked_lsn(srv->log)) {
        for (uint32_t i = srv->staged_head; i < srv->staged_count; i++) {
            if (srv->staged[i].lsn == lsn) {
                uint8_t *copy =
                    tq_arena_memdup(&srv->arena, srv->staged_bytes + srv->staged[i].offset,
                                    srv->staged[i].len ? srv->staged[i].len : 1);
                return tq_cmd_decode(copy, srv->staged[i].len, cmd, &srv->arena, error);
            }
        }
        return tq_error_set(error, TQ_ERR_INTERNAL, "record %" PRIu64 " not staged", lsn);
    }
    struct tq_log_record rec;
    enum tq_err err = tq_log_read(srv->log, lsn, &rec, srv->read_buf, srv->read_cap, error);
    if (err == TQ_ERR_RESOURCE_EXHAUSTED) {
        size_t cap = srv->read_cap;
        while (cap < rec.len)
            cap *= 2;
        srv->read_buf = tq_xrealloc(srv->read_buf, srv->read_cap, cap);
        srv->read_cap = cap;
        err = tq_log_read(srv->log, lsn, &rec, srv->read_buf, srv->read_cap, error);
    }
    if (err != TQ_OK) return err;
    if (rec.type != TQ_RECORD_TYPE_CMD) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "record %" PRIu64 " is not a command", lsn);
    }
    if (rec.flags & TQ_RECORD_REDACTED) {
        memset(cmd, 0, sizeof(*cmd));
        return TQ_ERR_NOT_FOUND;
    }
    uint8_t *copy = tq_arena_memdup(&srv->arena, rec.payload, rec.len ? rec.len : 1);
    return tq_cmd_decode(copy, rec.len, cmd, &srv->arena, error);
}

static Ticketq__Attachment **attachments_to_wire(struct req *r, uint32_t n,
                                                 const struct tq_attachment *a) {
    Ticketq__Attachment **out = aalloc(r, (n ? n : 1) * sizeof(*out));
    for (uint32_t i = 0; i < n; i++) {
        out[i] = aalloc(r, sizeof(**out));
        ticketq__attachment__init(out[i]);
        out[i]->key = cstr(r, a[i].key);
        out[i]->name = cstr(r, a[i].name);
        out[i]->mime_type = cstr(r, a[i].mime_type);
        out[i]->has_size_bytes = true;
        out[i]->size_bytes = a[i].size_bytes;
    }
    return out;
}

/* Builds a wire Message from a view, with its body read from the log. */
static Ticketq__Message *message_to_wire(struct req *r, const struct tq_message_view *v) {
    Ticketq__Message *m = aalloc(r, sizeof(*m));
    ticketq__message__init(m);
    m->message_id = v->message_id;
    m->ticket_id = v->ticket_id;
    m->direction = (Ticketq__Direction)v->direction;
    m->channel = (Ticketq__Channel)v->channel;
    m->has_delivery = true;
    m->delivery = (Ticketq__Delivery)v->delivery;
    m->has_lsn = true;
    m->lsn = v->lsn;
    m->has_attempts = v->attempts != 0;
    m->attempts = v->attempts;
    struct tq_cmd cmd;
    struct tq_error error;
    enum tq_err err = record_cmd(r->srv, v->lsn, &cmd, &error);
    /* The view keeps only what is in memory; commit time, provider time and the replying
     * agent come from the message's own record (tq_state_message_complete). */
    struct tq_message_view full = *v;
    if (err == TQ_OK) tq_state_message_complete(&full, &cmd);
    m->has_author_kind = true;
    m->author_kind = (Ticketq__AuthorKind)full.author_kind;
    m->has_author_id = full.author_id != 0;
    m->author_id = full.author_id;
    m->has_created_ms = full.created_ms != 0;
    m->created_ms = full.created_ms;
    m->has_provider_ts_ms = full.provider_ts_ms != 0;
    m->provider_ts_ms = full.provider_ts_ms;
    if (err == TQ_ERR_NOT_FOUND) {
        m->has_redacted = true;
        m->redacted = true;
        return m;
    }
    if (err != TQ_OK) {
        fprintf(stderr, "ticketqd: message %" PRIu64 " body at lsn %" PRIu64 ": %s\n",
                v->message_id, v->lsn, error.msg);
        return m;
    }
    if (cmd.type == TQ_CMD_MESSAGE_INGEST) {
        m->body = cstr(r, cmd.u.ingest.body);
        m->external_id = cstr(r, cmd.u.ingest.message_external_id);
        m->n_attachments = cmd.u.ingest.attachment_count;
        m->attachments =
            attachments_to_wire(r, cmd.u.ingest.attachment_count, cmd.u.ingest.attachments);
    } else if (cmd.type == TQ_CMD_MESSAGE_REPLY) {
        m->body = cstr(r, cmd.u.reply.body);
        m->n_attachments = cmd.u.reply.attachment_count;
        m->attachments =
            attachments_to_wire(r, cmd.u.reply.attachment_count, cmd.u.reply.attachments);
    }
    return m;
}

static Ticketq__Ticket *ticket_to_wire(struct req *r, const struct tq_ticket_view *v) {
    Ticketq__Ticket *t = aalloc(r, sizeof(*t));
    ticketq__ticket__init(t);
    t->ticket_id = v->ticket_id;
    t->number = v->number;
#define OPT(f)                                                                                     \
    do {                                                                                           \
        if (v->f != 0) {                                                                           \
            t->has_##f = true;                                                                     \
            t->f = v->f;                                                                           \
        }                                                                                          \
    } while (0)
    OPT(customer_id);
    OPT(queue_id);
    OPT(assignee_id);
    OPT(created_ms);
    OPT(updated_ms);
    OPT(first_response_ms);
    OPT(solved_ms);
    OPT(wake_at_ms);
    OPT(merged_into_id);
    OPT(follow_up_of_id);
#undef OPT
    t->status = (Ticketq__Status)v->status;
    t->priority = (Ticketq__Priority)v->priority;
    t->has_origin_channel = true;
    t->origin_channel = (Ticketq__Channel)v->origin_channel;
    t->subject = cstr(r, v->subject);
    t->has_message_count = true;
    t->message_count = v->message_count;
    t->n_tags = v->tag_count;
    t->tags = aalloc(r, (v->tag_count + 1) * sizeof(char *));
    for (uint32_t i = 0; i < v->tag_count; i++)
        t->tags[i] = cstr(r, v->tags[i]);
    t->n_custom_fields = v->field_count;
    t->custom_fields = aalloc(r, (v->field_count + 1) * sizeof(*t->custom_fields));
    for (uint32_t i = 0; i < v->field_count; i++) {
        const struct tq_custom_field *f = &v->custom_fields[i];
        Ticketq__CustomField *cf = aalloc(r, sizeof(*cf));
        ticketq__custom_field__init(cf);
        cf->key = cstr(r, f->key);
        if (f->type == TQ_FIELD_STRING) {
            cf->value_case = TICKETQ__CUSTOM_FIELD__VALUE_STRING_VALUE;
            cf->string_value = cstr(r, f->string_value);
        } else if (f->type == TQ_FIELD_INT) {
            cf->value_case = TICKETQ__CUSTOM_FIELD__VALUE_INT_VALUE;
            cf->int_value = f->int_value;
        } else {
            cf->value_case = TICKETQ__CUSTOM_FIELD__VALUE_BOOL_VALUE;
            cf->bool_value = f->int_value != 0;
        }
        t->custom_fields[i] = cf;
    }
    t->n_sla = v->sla_count;
    t->sla = aalloc(r, (v->sla_count + 1) * sizeof(*t->sla));
    for (uint32_t i = 0; i < v->sla_count && i < TQ_SLA_METRIC_COUNT; i++) {
        const struct tq_sla_view *s = &v->sla[i];
        Ticketq__SlaClock *c = aalloc(r, sizeof(*c));
        ticketq__sla_clock__init(c);
        c->metric = (Ticketq__SlaMetric)s->metric;
        c->state = (Ticketq__SlaClockState)s->state;
        c->has_deadline_ms = s->deadline_ms != 0;
        c->deadline_ms = s->deadline_ms;
        c->has_target_ms = true;
        c->target_ms = s->target_ms;
        c->has_elapsed_ms = true;
        c->elapsed_ms = s->elapsed_ms;
        c->has_warned = true;
        c->warned = s->warned;
        t->sla[i] = c;
    }
    return t;
}

static Ticketq__Queue *queue_to_wire(struct req *r, const struct tq_queue_view *v) {
    Ticketq__Queue *q = aalloc(r, sizeof(*q));
    ticketq__queue__init(q);
    q->queue_id = v->queue_id;
    q->name = cstr(r, v->name);
    q->has_auto_assign = true;
    q->auto_assign = v->auto_assign;
    q->has_assignment_timeout_ms = true;
    q->assignment_timeout_ms = v->assignment_timeout_ms;
    q->has_depth = true;
    q->depth = v->depth;
    q->has_oldest_enqueued_ms = v->oldest_enqueued_ms != 0;
    q->oldest_enqueued_ms = v->oldest_enqueued_ms;
    return q;
}

static Ticketq__Agent *agent_to_wire(struct req *r, const struct tq_agent_view *v) {
    Ticketq__Agent *a = aalloc(r, sizeof(*a));
    ticketq__agent__init(a);
    a->agent_id = v->agent_id;
    a->name = cstr(r, v->name);
    a->has_presence = true;
    a->presence = (Ticketq__Presence)v->presence;
    a->has_capacity_live = a->has_capacity_async = a->has_load_live = a->has_load_async = true;
    a->capacity_live = v->capacity[TQ_CHANNEL_CLASS_LIVE];
    a->capacity_async = v->capacity[TQ_CHANNEL_CLASS_ASYNC];
    a->load_live = v->load[TQ_CHANNEL_CLASS_LIVE];
    a->load_async = v->load[TQ_CHANNEL_CLASS_ASYNC];
    return a;
}

static Ticketq__Customer *customer_to_wire(struct req *r, const struct tq_customer_view *v) {
    Ticketq__Customer *c = aalloc(r, sizeof(*c));
    ticketq__customer__init(c);
    c->customer_id = v->customer_id;
    c->name = cstr(r, v->name);
    c->language = cstr(r, v->language);
    c->has_merged_into_id = v->merged_into_id != 0;
    c->merged_into_id = v->merged_into_id;
    c->has_open_ticket_count = true;
    c->open_ticket_count = v->open_ticket_count;
    c->identities = aalloc(r, (v->identity_count + 1) * sizeof(*c->identities));
    for (uint32_t i = 0; i < v->identity_count; i++) {
        enum tq_channel ch;
        struct tq_str ext;
        if (!tq_state_customer_identity(r->srv->state, r->tenant_id, v->customer_id, i, &ch,
                                        &ext)) {
            break;
        }
        Ticketq__Identity *id = aalloc(r, sizeof(*id));
        ticketq__identity__init(id);
        id->channel = (Ticketq__Channel)ch;
        id->external_id = cstr(r, ext);
        c->identities[c->n_identities++] = id;
    }
    return c;
}

/* ---- handlers: administration ----------------------------------------------------------- */

static enum tq_err op_tenant_create(struct req *r) {
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TENANT_CREATE);
    cmd.tenant_id = 0;
    cmd.u.tenant_create.name = S(r->msg->tenant_create->name);
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_tenant_settings(struct req *r) {
    const Ticketq__TenantSettings *m = r->msg->tenant_settings;
    struct tq_tenant_view tv;
    if (!tq_state_tenant_get(r->srv->state, r->tenant_id, &tv)) {
        return fail(r, TQ_ERR_NOT_FOUND, "tenant %" PRIu64 " not found", r->tenant_id);
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TENANT_SETTINGS);
    cmd.u.tenant_settings.auto_close_ms =
        m->has_auto_close_ms ? m->auto_close_ms : tv.auto_close_ms;
    cmd.u.tenant_settings.sla_warning_permille =
        m->has_sla_warning_permille ? m->sla_warning_permille : tv.sla_warning_permille;
    cmd.u.tenant_settings.outbox_attempts_max =
        m->has_outbox_attempts_max ? m->outbox_attempts_max : TQ_OUTBOX_ATTEMPTS_DEFAULT_MAX;
    for (size_t i = 0; i < m->n_reply_windows; i++) {
        if (!ok_channel(m->reply_windows[i]->channel)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "reply_windows[%zu]: bad channel", i);
        }
        cmd.u.tenant_settings.reply_window_ms[m->reply_windows[i]->channel] =
            m->reply_windows[i]->ms;
    }
    for (size_t i = 0; i < m->n_default_queues; i++) {
        if (!ok_channel(m->default_queues[i]->channel)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "default_queues[%zu]: bad channel", i);
        }
        cmd.u.tenant_settings.default_queue_id[m->default_queues[i]->channel] =
            m->default_queues[i]->queue_id;
    }
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_sla_policies_set(struct req *r) {
    const Ticketq__SlaPoliciesSet *m = r->msg->sla_policies_set;
    if (m->n_policies > TQ_SLA_POLICIES_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "%zu policies exceed the limit of %u",
                    m->n_policies, TQ_SLA_POLICIES_MAX);
    }
    struct tq_sla_policy *p = aalloc(r, (m->n_policies + 1) * sizeof(*p));
    for (size_t i = 0; i < m->n_policies; i++) {
        const Ticketq__SlaPolicy *in = m->policies[i];
        p[i].name = S(in->name);
        p[i].queue_id = in->has_queue_id ? in->queue_id : 0;
        if (in->has_channel && !ok_channel(in->channel)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "policies[%zu].channel out of range", i);
        }
        p[i].channel = in->has_channel ? (int32_t)in->channel : -1;
        p[i].tag = S(in->tag);
        p[i].business_hours = in->has_business_hours && in->business_hours;
        const Ticketq__SlaTargets *t = in->targets;
        size_t n[4] = {t->n_first_reply_ms, t->n_next_reply_ms, t->n_requester_wait_ms,
                       t->n_agent_work_ms};
        const uint64_t *v[4] = {t->first_reply_ms, t->next_reply_ms, t->requester_wait_ms,
                                t->agent_work_ms};
        for (unsigned metric = 0; metric < 4; metric++) {
            if (n[metric] > TQ_PRIORITY_COUNT) {
                return fail(r, TQ_ERR_INVALID_ARGUMENT,
                            "policies[%zu]: more than %u targets per metric (index = priority)", i,
                            TQ_PRIORITY_COUNT);
            }
            for (size_t pr = 0; pr < n[metric]; pr++)
                p[i].targets.target_ms[metric][pr] = v[metric][pr];
        }
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_SLA_POLICIES_SET);
    cmd.u.sla_policies_set.count = (uint32_t)m->n_policies;
    cmd.u.sla_policies_set.policies = p;
    return mutate(r, &cmd, NULL);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool parse_date(const char *s, int32_t *days_out) {
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    }
    int y = atoi(s), mo = atoi(s + 5), d = atoi(s + 8);
    if (y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31) return false;
    *days_out = (int32_t)days_from_civil(y, (unsigned)mo, (unsigned)d);
    return true;
}

static enum tq_err op_business_hours_set(struct req *r) {
    const Ticketq__BusinessHoursSet *m = r->msg->business_hours_set;
    struct tq_calendar *cal = aalloc(r, sizeof(*cal));
    tq_calendar_init_24x7(cal);
    if (m->n_holidays > TQ_CALENDAR_HOLIDAYS_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "more than %u holidays", TQ_CALENDAR_HOLIDAYS_MAX);
    }
    for (size_t i = 0; i < m->n_hours; i++) {
        const Ticketq__DayHours *h = m->hours[i];
        if (h->weekday > 6 || h->start_minute >= h->end_minute || h->end_minute > 1440) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT,
                        "hours[%zu]: weekday 0..6 and 0 <= start_minute < end_minute <= 1440", i);
        }
        uint8_t *cnt = &cal->interval_count[h->weekday];
        if (*cnt >= TQ_CALENDAR_INTERVALS_PER_DAY_MAX) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "more than %u intervals on weekday %u",
                        TQ_CALENDAR_INTERVALS_PER_DAY_MAX, h->weekday);
        }
        struct tq_calendar_interval *iv = cal->intervals[h->weekday];
        unsigned j = *cnt; /* insertion sort by start */
        while (j > 0 && iv[j - 1].start_minute > h->start_minute) {
            iv[j] = iv[j - 1];
            j--;
        }
        iv[j] = (struct tq_calendar_interval){(uint16_t)h->start_minute, (uint16_t)h->end_minute};
        (*cnt)++;
    }
    for (size_t i = 0; i < m->n_holidays; i++) {
        int32_t day;
        if (!parse_date(m->holidays[i], &day)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "holidays[%zu]: expected YYYY-MM-DD", i);
        }
        uint32_t j = cal->holiday_count;
        while (j > 0 && cal->holidays[j - 1] > day) {
            cal->holidays[j] = cal->holidays[j - 1];
            j--;
        }
        if (j > 0 && cal->holidays[j - 1] == day) { /* duplicate: undo the shift */
            for (uint32_t k = j; k < cal->holiday_count; k++)
                cal->holidays[k] = cal->holidays[k + 1];
            continue;
        }
        cal->holidays[j] = day;
        cal->holiday_count++;
    }
    struct tq_error error;
    int64_t now_s = (int64_t)(tq_now_ms() / 1000);
    if (m->tz_name == NULL || strlen(m->tz_name) >= TQ_CALENDAR_TZ_NAME_BYTES_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "tz_name missing or too long");
    }
    /* Outside apply: the tz database is read here and the resolved table is logged. */
    if (tq_calendar_tz_load(cal, m->tz_name, now_s - TQ_TZ_SPAN_BACK_S, now_s + TQ_TZ_SPAN_AHEAD_S,
                            &error) != TQ_OK) {
        return fail_err(r, &error);
    }
    if (tq_calendar_validate(cal, &error) != TQ_OK) return fail_err(r, &error);
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_BUSINESS_HOURS_SET);
    cmd.u.business_hours_set.calendar = cal;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_token_issue(struct req *r) {
    const Ticketq__TokenIssue *m = r->msg->token_issue;
    if (!ok_role(m->role)) return fail(r, TQ_ERR_INVALID_ARGUMENT, "role out of range");
    enum tq_role role = (enum tq_role)m->role;
    uint64_t tenant = r->tenant_id;
    if (role == TQ_ROLE_SERVER_ADMIN) {
        if (r->sess->role != TQ_ROLE_SERVER_ADMIN) {
            return fail(r, TQ_ERR_PERMISSION_DENIED, "only a server admin issues server tokens");
        }
        tenant = 0;
    } else if (tenant == 0) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "tenant_id is required for a tenant token");
    }
    if (role == TQ_ROLE_AGENT && (!m->has_agent_id || m->agent_id == 0)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "an agent token needs agent_id");
    }
    uint8_t secret[TQ_TOKEN_SECRET_BYTES];
    if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
        return fail(r, TQ_ERR_UNAVAILABLE, "no randomness available");
    }
    char text[TQ_TOKEN_TEXT_BYTES + 1];
    tq_dispatch_token_text(secret, text);
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TOKEN_ISSUE);
    cmd.tenant_id = tenant;
    cmd.u.token_issue.role = role;
    cmd.u.token_issue.agent_id = role == TQ_ROLE_AGENT ? m->agent_id : 0;
    cmd.u.token_issue.name = S(m->name);
    tq_auth_token_hash(text, strlen(text), cmd.u.token_issue.hash);
    enum tq_err err = mutate(r, &cmd, NULL);
    if (err != TQ_OK) return err;
    r->resp->ids->token_secret = tq_arena_memdup(ARENA(r), text, sizeof(text));
    return TQ_OK;
}

static enum tq_err op_token_revoke(struct req *r) {
    struct tq_token_view tv;
    uint64_t id = r->msg->token_revoke->token_id;
    bool found = tq_state_token_get(r->srv->state, id, &tv);
    if (!found || (r->sess->role != TQ_ROLE_SERVER_ADMIN && tv.tenant_id != r->sess->tenant_id)) {
        return fail(r, TQ_ERR_NOT_FOUND, "token %" PRIu64 " not found", id);
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TOKEN_REVOKE);
    cmd.tenant_id = tv.tenant_id;
    cmd.u.token_revoke.token_id = id;
    enum tq_err err = mutate(r, &cmd, NULL);
    if (err != TQ_OK) return err;
    /* At once, also for connections that only listen: end their subscriptions now (their
     * next request is refused by the per-request token check). */
    for (uint32_t i = 0; i < r->srv->conn_high; i++) {
        struct tq_conn *c = &r->srv->conns[i];
        if (!c->in_use || c->closing || !c->session.authed || c->session.token_id != id) continue;
        c->session.authed = false;
        if (c->sub.active) {
            Ticketq__Error e = TICKETQ__ERROR__INIT;
            e.code = TICKETQ__ERROR_CODE__UNAUTHENTICATED;
            e.message = (char *)(uintptr_t) "token revoked";
            Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
            resp.id = c->sub.request_id;
            resp.error = &e;
            if (!tq_conn_queue_frame(c, &resp.base, r->srv->lsn_staged, -1, false, 0,
                                     tq_dispatch_send_queue_max(r->srv))) {
                c->close_after_send = true;
            }
            tq_sub_stop(r->srv, c);
        }
    }
    return TQ_OK;
}

static enum tq_err op_queue_create(struct req *r) {
    const Ticketq__QueueCreate *m = r->msg->queue_create;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_QUEUE_CREATE);
    cmd.u.queue.name = S(m->name);
    cmd.u.queue.auto_assign = m->has_auto_assign && m->auto_assign;
    cmd.u.queue.assignment_timeout_ms = m->has_assignment_timeout_ms ? m->assignment_timeout_ms : 0;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_queue_update(struct req *r) {
    const Ticketq__QueueUpdate *m = r->msg->queue_update;
    struct tq_queue_view qv;
    struct tq_error error;
    if (tq_state_queue_get(r->srv->state, r->tenant_id, m->queue_id, &qv) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "queue %" PRIu64 " not found", m->queue_id);
    }
    (void)error;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_QUEUE_UPDATE);
    cmd.u.queue.queue_id = m->queue_id;
    cmd.u.queue.name = m->name ? S(m->name) : qv.name;
    cmd.u.queue.auto_assign = m->has_auto_assign ? m->auto_assign : qv.auto_assign;
    cmd.u.queue.assignment_timeout_ms =
        m->has_assignment_timeout_ms ? m->assignment_timeout_ms : qv.assignment_timeout_ms;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_agent_create(struct req *r) {
    const Ticketq__AgentCreate *m = r->msg->agent_create;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_AGENT_CREATE);
    cmd.u.agent.name = S(m->name);
    if (m->has_capacity_live || m->has_capacity_async) {
        cmd.u.agent.set_capacity = true;
        cmd.u.agent.capacity[TQ_CHANNEL_CLASS_LIVE] =
            m->has_capacity_live ? m->capacity_live : TQ_AGENT_CAPACITY_LIVE_DEFAULT;
        cmd.u.agent.capacity[TQ_CHANNEL_CLASS_ASYNC] =
            m->has_capacity_async ? m->capacity_async : TQ_AGENT_CAPACITY_ASYNC_DEFAULT;
    }
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_agent_update(struct req *r) {
    const Ticketq__AgentUpdate *m = r->msg->agent_update;
    uint64_t agent_id = 0;
    if (acting_agent(r, m->has_agent_id, m->agent_id, true, &agent_id) != TQ_OK) {
        return TQ_ERR_PERMISSION_DENIED;
    }
    struct tq_agent_view av;
    if (tq_state_agent_get(r->srv->state, r->tenant_id, agent_id, &av) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "agent %" PRIu64 " not found", agent_id);
    }
    if (m->has_presence && !ok_presence(m->presence)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "presence out of range");
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_AGENT_UPDATE);
    cmd.u.agent.agent_id = agent_id;
    cmd.u.agent.name = S(m->name);
    cmd.u.agent.set_presence = m->has_presence;
    cmd.u.agent.presence = m->has_presence ? (enum tq_presence)m->presence : av.presence;
    cmd.u.agent.set_capacity = m->has_capacity_live || m->has_capacity_async;
    cmd.u.agent.capacity[TQ_CHANNEL_CLASS_LIVE] =
        m->has_capacity_live ? m->capacity_live : av.capacity[TQ_CHANNEL_CLASS_LIVE];
    cmd.u.agent.capacity[TQ_CHANNEL_CLASS_ASYNC] =
        m->has_capacity_async ? m->capacity_async : av.capacity[TQ_CHANNEL_CLASS_ASYNC];
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_agent_get(struct req *r) {
    const Ticketq__AgentGet *m = r->msg->agent_get;
    uint64_t agent_id = m->has_agent_id ? m->agent_id : 0;
    if (!m->has_agent_id) {
        if (r->sess->role != TQ_ROLE_AGENT) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "agent_id is required");
        }
        agent_id = r->sess->agent_id;
    }
    struct tq_agent_view av;
    if (tq_state_agent_get(r->srv->state, r->tenant_id, agent_id, &av) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "agent %" PRIu64 " not found", agent_id);
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_AGENT;
    r->resp->agent = agent_to_wire(r, &av);
    return TQ_OK;
}

/* ---- handlers: customers ---------------------------------------------------------------- */

static enum tq_err op_customer_create(struct req *r) {
    const Ticketq__CustomerCreate *m = r->msg->customer_create;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_CUSTOMER_CREATE);
    cmd.u.customer_create.name = S(m->name);
    cmd.u.customer_create.language = S(m->language);
    if (m->identity != NULL) {
        if (!ok_channel(m->identity->channel)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "identity.channel out of range");
        }
        cmd.u.customer_create.channel = (enum tq_channel)m->identity->channel;
        cmd.u.customer_create.external_id = S(m->identity->external_id);
    }
    return mutate(r, &cmd, NULL);
}

static enum tq_err reply_customer(struct req *r, enum tq_err err, uint64_t id,
                                  const struct tq_customer_view *cv) {
    if (err != TQ_OK) return fail(r, TQ_ERR_NOT_FOUND, "customer %" PRIu64 " not found", id);
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_CUSTOMER;
    r->resp->customer = customer_to_wire(r, cv);
    return TQ_OK;
}

static enum tq_err op_customer_get(struct req *r) {
    uint64_t id = r->msg->customer_get->customer_id;
    struct tq_customer_view cv;
    enum tq_err err = tq_state_customer_get(r->srv->state, r->tenant_id, id, &cv);
    return reply_customer(r, err, id, &cv);
}

static enum tq_err op_customer_lookup(struct req *r) {
    const Ticketq__Identity *id = r->msg->customer_lookup->identity;
    if (!ok_channel(id->channel)) return fail(r, TQ_ERR_INVALID_ARGUMENT, "channel out of range");
    struct tq_customer_view cv;
    enum tq_err err = tq_state_customer_find(r->srv->state, r->tenant_id,
                                             (enum tq_channel)id->channel, S(id->external_id), &cv);
    if (err != TQ_OK) return fail(r, TQ_ERR_NOT_FOUND, "no customer with that identity");
    return reply_customer(r, TQ_OK, cv.customer_id, &cv);
}

static enum tq_err op_customer_link(struct req *r) {
    const Ticketq__CustomerLink *m = r->msg->customer_link;
    if (!ok_channel(m->identity->channel)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "identity.channel out of range");
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_CUSTOMER_LINK);
    cmd.u.customer_link.customer_id = m->customer_id;
    cmd.u.customer_link.channel = (enum tq_channel)m->identity->channel;
    cmd.u.customer_link.external_id = S(m->identity->external_id);
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_customer_merge(struct req *r) {
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_CUSTOMER_MERGE);
    cmd.u.customer_merge.survivor_id = r->msg->customer_merge->survivor_id;
    cmd.u.customer_merge.merged_id = r->msg->customer_merge->merged_id;
    return mutate(r, &cmd, NULL);
}

/* ---- handlers: messages and tickets ----------------------------------------------------- */

/* Validates an Ingest and builds its command (reads nothing of the state, so a batch can
 * build all its ingests before applying the first). */
static enum tq_err ingest_build(struct req *r, struct tq_cmd *cmd_out) {
    const Ticketq__Ingest *m = r->msg->ingest;
    if (!ok_channel(m->channel)) return fail(r, TQ_ERR_INVALID_ARGUMENT, "channel out of range");
    if (m->has_priority && !ok_priority(m->priority)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "priority out of range");
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_MESSAGE_INGEST);
    cmd.u.ingest.channel = (enum tq_channel)m->channel;
    cmd.u.ingest.from_external_id = S(m->from);
    cmd.u.ingest.customer_name = S(m->customer_name);
    cmd.u.ingest.language = S(m->language);
    cmd.u.ingest.message_external_id = S(m->external_id);
    cmd.u.ingest.provider_ts_ms = m->has_provider_ts_ms ? m->provider_ts_ms : 0;
    cmd.u.ingest.queue_id = m->has_queue_id ? m->queue_id : 0;
    cmd.u.ingest.priority = m->has_priority ? (enum tq_priority)m->priority : TQ_PRIORITY_NORMAL;
    cmd.u.ingest.subject = S(m->subject);
    cmd.u.ingest.body = S(m->body);
    if (attachments_of(r, m->n_attachments, m->attachments, &cmd.u.ingest.attachment_count,
                       &cmd.u.ingest.attachments) != TQ_OK ||
        strs_of(r, m->n_tags, m->tags, TQ_TAGS_PER_TICKET_MAX, "tags", &cmd.u.ingest.tag_count,
                &cmd.u.ingest.tags) != TQ_OK) {
        return TQ_ERR_INVALID_ARGUMENT;
    }
    *cmd_out = cmd;
    return TQ_OK;
}

static enum tq_err op_ingest(struct req *r) {
    struct tq_cmd cmd;
    enum tq_err err = ingest_build(r, &cmd);
    return err != TQ_OK ? err : mutate(r, &cmd, NULL);
}

static enum tq_err op_reply(struct req *r) {
    const Ticketq__Reply *m = r->msg->reply;
    struct tq_ticket_view tv;
    if (tq_state_ticket_get(r->srv->state, r->tenant_id, m->ticket_id, &tv) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "ticket %" PRIu64 " not found", m->ticket_id);
    }
    if (m->has_channel && !ok_channel(m->channel)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "channel out of range");
    }
    if (m->has_set_status && !ok_status(m->set_status)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "set_status out of range");
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_MESSAGE_REPLY);
    if (acting_agent(r, m->has_agent_id, m->agent_id, false, &cmd.actor_agent_id) != TQ_OK) {
        return TQ_ERR_PERMISSION_DENIED;
    }
    cmd.u.reply.ticket_id = m->ticket_id;
    cmd.u.reply.internal_note = m->has_internal_note && m->internal_note;
    cmd.u.reply.automated = m->has_automated && m->automated;
    cmd.u.reply.channel = m->has_channel ? (enum tq_channel)m->channel : tv.origin_channel;
    cmd.u.reply.set_status = m->has_set_status;
    cmd.u.reply.status = m->has_set_status ? (enum tq_ticket_status)m->set_status : TQ_STATUS_NEW;
    cmd.u.reply.body = S(m->body);
    if (attachments_of(r, m->n_attachments, m->attachments, &cmd.u.reply.attachment_count,
                       &cmd.u.reply.attachments) != TQ_OK) {
        return TQ_ERR_INVALID_ARGUMENT;
    }
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_ticket_update(struct req *r) {
    const Ticketq__TicketUpdate *m = r->msg->ticket_update;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TICKET_UPDATE);
    cmd.u.ticket_update.ticket_id = m->ticket_id;
    uint32_t f = 0;
    if (m->has_status) {
        if (!ok_status(m->status)) return fail(r, TQ_ERR_INVALID_ARGUMENT, "status out of range");
        f |= TQ_UPDATE_STATUS;
        cmd.u.ticket_update.status = (enum tq_ticket_status)m->status;
    }
    if (m->has_priority) {
        if (!ok_priority(m->priority)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "priority out of range");
        }
        f |= TQ_UPDATE_PRIORITY;
        cmd.u.ticket_update.priority = (enum tq_priority)m->priority;
    }
    if (m->has_queue_id) {
        f |= TQ_UPDATE_QUEUE;
        cmd.u.ticket_update.queue_id = m->queue_id;
    }
    if (m->has_assignee_id) {
        if (r->sess->role == TQ_ROLE_AGENT && m->assignee_id != 0 &&
            m->assignee_id != r->sess->agent_id) {
            return fail(r, TQ_ERR_PERMISSION_DENIED,
                        "an agent token assigns tickets only to itself");
        }
        f |= TQ_UPDATE_ASSIGNEE;
        cmd.u.ticket_update.assignee_id = m->assignee_id;
    }
    if (m->n_tags_add > 0) f |= TQ_UPDATE_TAGS_ADD;
    if (m->n_tags_remove > 0) f |= TQ_UPDATE_TAGS_REMOVE;
    if (strs_of(r, m->n_tags_add, m->tags_add, TQ_TAGS_PER_TICKET_MAX, "tags_add",
                &cmd.u.ticket_update.tags_add_count, &cmd.u.ticket_update.tags_add) != TQ_OK ||
        strs_of(r, m->n_tags_remove, m->tags_remove, TQ_TAGS_PER_TICKET_MAX, "tags_remove",
                &cmd.u.ticket_update.tags_remove_count,
                &cmd.u.ticket_update.tags_remove) != TQ_OK) {
        return TQ_ERR_INVALID_ARGUMENT;
    }
    if (m->subject != NULL) {
        f |= TQ_UPDATE_SUBJECT;
        cmd.u.ticket_update.subject = S(m->subject);
    }
    if (m->n_custom_fields > TQ_CUSTOM_FIELDS_PER_TICKET_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "more than %u custom fields",
                    TQ_CUSTOM_FIELDS_PER_TICKET_MAX);
    }
    if (m->n_custom_fields > 0) {
        struct tq_custom_field *cf = aalloc(r, m->n_custom_fields * sizeof(*cf));
        for (size_t i = 0; i < m->n_custom_fields; i++) {
            const Ticketq__CustomField *in = m->custom_fields[i];
            cf[i].key = S(in->key);
            switch (in->value_case) {
            case TICKETQ__CUSTOM_FIELD__VALUE_STRING_VALUE:
                cf[i].type = TQ_FIELD_STRING;
                cf[i].string_value = S(in->string_value);
                break;
            case TICKETQ__CUSTOM_FIELD__VALUE_INT_VALUE:
                cf[i].type = TQ_FIELD_INT;
                cf[i].int_value = in->int_value;
                break;
            case TICKETQ__CUSTOM_FIELD__VALUE_BOOL_VALUE:
                cf[i].type = TQ_FIELD_BOOL;
                cf[i].int_value = in->bool_value ? 1 : 0;
                break;
            case TICKETQ__CUSTOM_FIELD__VALUE__NOT_SET:
            default: return fail(r, TQ_ERR_INVALID_ARGUMENT, "custom_fields[%zu] has no value", i);
            }
        }
        f |= TQ_UPDATE_FIELDS;
        cmd.u.ticket_update.field_count = (uint32_t)m->n_custom_fields;
        cmd.u.ticket_update.custom_fields = cf;
    }
    if (m->has_wake_at_ms) {
        f |= TQ_UPDATE_WAKE_AT;
        cmd.u.ticket_update.wake_at_ms = m->wake_at_ms;
    }
    cmd.u.ticket_update.fields = f;
    return mutate(r, &cmd, NULL);
}

/* ---- claim-and-reply (Claim.reply): two commands, one round trip ------------------------ */

/* Everything the reply can be refused for is checked before the claim is applied, so a bad
 * reply never leaves a claimed ticket behind: the body (length, UTF-8), the status (a claimed
 * ticket is NEW or OPEN, the queueable statuses of docs/tickets.md, so the move must be allowed
 * from both), the record size and room in the log for both records. Then TICKET_CLAIM and
 * MESSAGE_REPLY (carrying set_status) are applied and logged as usual; the response waits for
 * the later LSN. Should the reply still fail (an id space exhausted: not checkable here), the
 * claim is undone with TICKET_RELEASE and the reply's error is returned. */
static enum tq_err claim_and_reply(struct req *r, struct tq_cmd *claim) {
    const Ticketq__ClaimReply *m = r->msg->claim->reply;
    struct tq_server *srv = r->srv;
    struct tq_str body = S(m->body);
    if (body.len > srv->cfg.body_max) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT,
                    "reply.body: %u bytes exceed the limit of %u (--body-max); nothing claimed",
                    body.len, srv->cfg.body_max);
    }
    if (!tq_state_text_valid(body.ptr, body.len)) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "reply.body: not valid UTF-8; nothing claimed");
    }
    if (m->has_set_status) {
        if (!ok_status(m->set_status)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "reply.set_status out of range");
        }
        enum tq_ticket_status to = (enum tq_ticket_status)m->set_status;
        const enum tq_ticket_status claimable[] = {TQ_STATUS_NEW, TQ_STATUS_OPEN};
        for (size_t i = 0; i < TQ_ARRAY_COUNT(claimable); i++) {
            if (to != claimable[i] && !tq_state_status_move_allowed(claimable[i], to)) {
                return fail(r, TQ_ERR_INVALID_ARGUMENT,
                            "reply.set_status %s: a claimed ticket is new or open and cannot "
                            "move to it; nothing claimed",
                            tq_status_name(to));
            }
        }
    }
    struct tq_cmd reply = new_cmd(r, TQ_CMD_MESSAGE_REPLY);
    reply.actor_agent_id = claim->u.claim.agent_id; /* the claiming agent is the author */
    reply.u.reply.ticket_id = 0; /* set after the claim (fixed width: the size is already known) */
    reply.u.reply.internal_note = m->has_internal_note && m->internal_note;
    reply.u.reply.set_status = m->has_set_status;
    reply.u.reply.status = m->has_set_status ? (enum tq_ticket_status)m->set_status : TQ_STATUS_NEW;
    reply.u.reply.body = body;
    size_t reply_size = tq_cmd_encoded_size(&reply);
    if (reply_size > TQ_RECORD_BYTES_DEFAULT_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT,
                    "reply of %zu bytes exceeds the record limit of %u bytes; nothing claimed",
                    reply_size, TQ_RECORD_BYTES_DEFAULT_MAX);
    }
    uint64_t need = tq_cmd_encoded_size(claim) + reply_size + 2ull * TQ_EVENTS_RECORD_RESERVE_BYTES;
    if (need > TQ_RECORD_BYTES_DEFAULT_MAX) need = TQ_RECORD_BYTES_DEFAULT_MAX;
    if (!tq_log_can_append(srv->log, (uint32_t)need)) {
        return fail(r, TQ_ERR_RESOURCE_EXHAUSTED,
                    "the log cannot take this write now (disk full or commit backlog); "
                    "nothing was applied, retry later");
    }
    struct tq_cmd_result claimed;
    enum tq_err err = mutate(r, claim, &claimed); /* empty queue: NOT_FOUND, nothing applied */
    if (err != TQ_OK) return err;
    struct tq_ticket_view tv;
    enum tq_err got = tq_state_ticket_get(srv->state, r->tenant_id, claimed.ticket_id, &tv);
    TQ_ASSERT(got == TQ_OK);
    TQ_ASSERT(tv.status == TQ_STATUS_NEW || tv.status == TQ_STATUS_OPEN);
    reply.u.reply.ticket_id = claimed.ticket_id;
    reply.u.reply.channel = tv.origin_channel;
    struct tq_cmd_result replied;
    err = mutate(r, &reply, &replied);
    if (err != TQ_OK) {
        char why[TQ_ERROR_MSG_BYTES_MAX];
        snprintf(why, sizeof(why), "%s", r->resp->error->message);
        struct tq_cmd release = new_cmd(r, TQ_CMD_TICKET_RELEASE);
        release.u.release.ticket_id = claimed.ticket_id;
        struct tq_cmd_result released;
        memset(&released, 0, sizeof(released));
        struct tq_error rel_error;
        tq_error_clear(&rel_error);
        uint64_t lsn = 0;
        if (tq_dispatch_run_cmd(srv, &release, &released, &lsn, &rel_error) != TQ_OK) {
            return fail(r, err, "reply: %s; ticket %" PRIu64 " stays claimed (release: %s)", why,
                        claimed.ticket_id, rel_error.msg);
        }
        return fail(r, err, "reply: %s; the claim of ticket %" PRIu64 " was released", why,
                    claimed.ticket_id);
    }
    r->resp->ids->has_agent_id = true;
    r->resp->ids->agent_id = claimed.agent_id;
    return TQ_OK;
}

static enum tq_err op_claim(struct req *r) {
    const Ticketq__Claim *m = r->msg->claim;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TICKET_CLAIM);
    if (acting_agent(r, m->has_agent_id, m->agent_id, true, &cmd.u.claim.agent_id) != TQ_OK) {
        return TQ_ERR_PERMISSION_DENIED;
    }
    if (m->n_queue_ids > TQ_CLAIM_QUEUES_MAX) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "more than %u queues", TQ_CLAIM_QUEUES_MAX);
    }
    cmd.u.claim.queue_count = (uint32_t)m->n_queue_ids;
    cmd.u.claim.queue_ids = m->queue_ids;
    if (m->reply != NULL) return claim_and_reply(r, &cmd);
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_release(struct req *r) {
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TICKET_RELEASE);
    cmd.u.release.ticket_id = r->msg->release->ticket_id;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_transfer(struct req *r) {
    const Ticketq__Transfer *m = r->msg->transfer;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TICKET_TRANSFER);
    cmd.u.transfer.ticket_id = m->ticket_id;
    cmd.u.transfer.to_queue_id = m->has_to_queue_id ? m->to_queue_id : 0;
    cmd.u.transfer.to_agent_id = m->has_to_agent_id ? m->to_agent_id : 0;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_ticket_merge(struct req *r) {
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_TICKET_MERGE);
    cmd.u.ticket_merge.source_id = r->msg->ticket_merge->source_id;
    cmd.u.ticket_merge.target_id = r->msg->ticket_merge->target_id;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_ticket_get(struct req *r) {
    const Ticketq__TicketGet *m = r->msg->ticket_get;
    struct tq_ticket_view tv;
    if (tq_state_ticket_get(r->srv->state, r->tenant_id, m->ticket_id, &tv) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "ticket %" PRIu64 " not found", m->ticket_id);
    }
    uint32_t limit = m->has_message_limit ? m->message_limit : TQ_MESSAGES_PAGE_DEFAULT;
    if (limit > TQ_MESSAGES_PAGE_MAX) limit = TQ_MESSAGES_PAGE_MAX;
    uint32_t first = m->has_message_offset ? m->message_offset : 0;
    if (m->has_last && m->last) first = tv.message_count > limit ? tv.message_count - limit : 0;
    Ticketq__Ticket *t = ticket_to_wire(r, &tv);
    struct tq_message_view *views = aalloc(r, (limit + 1) * sizeof(*views));
    uint32_t n = limit == 0 ? 0
                            : tq_state_ticket_messages(r->srv->state, r->tenant_id, m->ticket_id,
                                                       first, limit, views);
    t->messages = aalloc(r, (n + 1) * sizeof(*t->messages));
    for (uint32_t i = 0; i < n; i++)
        t->messages[i] = message_to_wire(r, &views[i]);
    t->n_messages = n;
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_TICKET;
    r->resp->ticket = t;
    return TQ_OK;
}

static uint32_t list_limit(protobuf_c_boolean has, uint32_t v) {
    if (!has || v == 0) return TQ_LIST_LIMIT_DEFAULT;
    return v > TQ_LIST_LIMIT_MAX ? TQ_LIST_LIMIT_MAX : v;
}

static enum tq_err op_queue_list(struct req *r) {
    const Ticketq__QueueList *m = r->msg->queue_list;
    struct tq_queue_view qv;
    if (tq_state_queue_get(r->srv->state, r->tenant_id, m->queue_id, &qv) != TQ_OK) {
        return fail(r, TQ_ERR_NOT_FOUND, "queue %" PRIu64 " not found", m->queue_id);
    }
    uint32_t limit = list_limit(m->has_limit, m->limit);
    uint64_t *ids = aalloc(r, limit * sizeof(*ids));
    uint32_t n = tq_state_queue_list(r->srv->state, r->tenant_id, m->queue_id, ids, limit);
    if (n > limit) n = limit;
    Ticketq__QueueListResult *res = aalloc(r, sizeof(*res));
    ticketq__queue_list_result__init(res);
    res->queue = queue_to_wire(r, &qv);
    res->tickets = aalloc(r, (n + 1) * sizeof(*res->tickets));
    for (uint32_t i = 0; i < n; i++) {
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(r->srv->state, r->tenant_id, ids[i], &tv) != TQ_OK) continue;
        res->tickets[res->n_tickets++] = ticket_to_wire(r, &tv);
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_QUEUE_LIST;
    r->resp->queue_list = res;
    return TQ_OK;
}

static enum tq_err op_queues_get(struct req *r) {
    uint64_t *ids = aalloc(r, TQ_QUEUES_PER_TENANT_REPLY_MAX * sizeof(*ids));
    uint32_t n =
        tq_state_queue_ids(r->srv->state, r->tenant_id, ids, TQ_QUEUES_PER_TENANT_REPLY_MAX);
    if (n > TQ_QUEUES_PER_TENANT_REPLY_MAX) n = TQ_QUEUES_PER_TENANT_REPLY_MAX;
    Ticketq__QueuesResult *res = aalloc(r, sizeof(*res));
    ticketq__queues_result__init(res);
    res->queues = aalloc(r, (n + 1) * sizeof(*res->queues));
    for (uint32_t i = 0; i < n; i++) {
        struct tq_queue_view qv;
        if (tq_state_queue_get(r->srv->state, r->tenant_id, ids[i], &qv) != TQ_OK) continue;
        res->queues[res->n_queues++] = queue_to_wire(r, &qv);
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_QUEUES;
    r->resp->queues = res;
    return TQ_OK;
}

static enum tq_err op_sla_nearest(struct req *r) {
    const Ticketq__SlaNearest *m = r->msg->sla_nearest;
    uint32_t limit = list_limit(m->has_limit, m->limit);
    struct tq_sla_due *due = aalloc(r, limit * sizeof(*due));
    uint32_t n = tq_state_sla_nearest(r->srv->state, r->tenant_id, due, limit);
    if (n > limit) n = limit;
    Ticketq__SlaNearestResult *res = aalloc(r, sizeof(*res));
    ticketq__sla_nearest_result__init(res);
    res->due = aalloc(r, (n + 1) * sizeof(*res->due));
    for (uint32_t i = 0; i < n; i++) {
        Ticketq__SlaDue *d = aalloc(r, sizeof(*d));
        ticketq__sla_due__init(d);
        d->ticket_id = due[i].ticket_id;
        d->metric = (Ticketq__SlaMetric)due[i].metric;
        d->deadline_ms = due[i].deadline_ms;
        res->due[i] = d;
    }
    res->n_due = n;
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_SLA_NEAREST;
    r->resp->sla_nearest = res;
    return TQ_OK;
}

/* ---- handlers: outbox, stats, consumers, subscriptions ---------------------------------- */

static enum tq_err op_outbox_take(struct req *r) {
    const Ticketq__OutboxTake *m = r->msg->outbox_take;
    if (!ok_channel(m->channel)) return fail(r, TQ_ERR_INVALID_ARGUMENT, "channel out of range");
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_OUTBOX_TAKE);
    cmd.u.outbox_take.channel = (enum tq_channel)m->channel;
    uint32_t max = m->has_max && m->max > 0 ? m->max : 10;
    cmd.u.outbox_take.max = max > TQ_OUTBOX_TAKE_MAX ? TQ_OUTBOX_TAKE_MAX : max;
    cmd.u.outbox_take.lease_ms = m->has_lease_ms && m->lease_ms > 0 ? m->lease_ms : 30000;
    struct tq_cmd_result res = {0};
    if (mutate(r, &cmd, &res) != TQ_OK) return TQ_ERR_INVALID_ARGUMENT;
    Ticketq__OutboxTakeResult *out = aalloc(r, sizeof(*out));
    ticketq__outbox_take_result__init(out);
    out->messages = aalloc(r, (res.taken_count + 1) * sizeof(*out->messages));
    uint64_t lsn = r->resp->lsn;
    for (uint32_t i = 0; i < res.taken_count; i++) {
        struct tq_message_view mv;
        if (tq_state_message_get(r->srv->state, r->tenant_id, res.taken_ids[i], &mv) != TQ_OK) {
            continue;
        }
        Ticketq__Message *wm = message_to_wire(r, &mv);
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(r->srv->state, r->tenant_id, mv.ticket_id, &tv) == TQ_OK) {
            for (uint32_t k = 0;; k++) { /* the customer's identity on the reply's channel */
                enum tq_channel ch;
                struct tq_str ext;
                if (!tq_state_customer_identity(r->srv->state, r->tenant_id, tv.customer_id, k, &ch,
                                                &ext)) {
                    break;
                }
                if (ch == mv.channel) {
                    wm->to = cstr(r, ext);
                    break;
                }
            }
        }
        out->messages[out->n_messages++] = wm;
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_OUTBOX;
    r->resp->outbox = out;
    r->resp->lsn = lsn;
    return TQ_OK;
}

static enum tq_err op_outbox_ack(struct req *r) {
    const Ticketq__OutboxAck *m = r->msg->outbox_ack;
    if (m->status != TICKETQ__DELIVERY__SENT && m->status != TICKETQ__DELIVERY__DELIVERED &&
        m->status != TICKETQ__DELIVERY__READ && m->status != TICKETQ__DELIVERY__FAILED) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "status must be SENT, DELIVERED, READ or FAILED");
    }
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_OUTBOX_ACK);
    cmd.u.outbox_ack.message_id = m->message_id;
    cmd.u.outbox_ack.status = (enum tq_delivery)m->status;
    cmd.u.outbox_ack.reason = S(m->reason);
    cmd.u.outbox_ack.provider_message_id = S(m->provider_message_id);
    cmd.u.outbox_ack.provider_ts_ms = m->has_provider_ts_ms ? m->provider_ts_ms : 0;
    cmd.u.outbox_ack.retry = m->has_retry && m->retry;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_stats(struct req *r) {
    struct tq_stats st;
    tq_state_stats(r->srv->state, r->tenant_id, &st);
    Ticketq__StatsResult *s = aalloc(r, sizeof(*s));
    ticketq__stats_result__init(s);
#define SET(f, v)                                                                                  \
    s->has_##f = true;                                                                             \
    s->f = (v)
    SET(tenant_count, st.tenant_count);
    SET(tickets, st.ticket_count);
    SET(messages, st.message_count);
    SET(customers, st.customer_count);
    SET(agents, st.agent_count);
    SET(queues, st.queue_count);
    SET(queued_tickets, st.queued_tickets);
    SET(sla_breaches, st.sla_breaches);
    SET(sla_warnings, st.sla_warnings);
    SET(outbox_pending, st.outbox_pending);
    SET(first_response_p50_ms, st.first_response_p50_ms);
    SET(first_response_p90_ms, st.first_response_p90_ms);
    SET(resolution_p50_ms, st.resolution_p50_ms);
    SET(resolution_p90_ms, st.resolution_p90_ms);
    SET(last_lsn, r->srv->lsn_staged); /* durable by the time this response is sent */
#undef SET
    s->n_tickets_by_status = TQ_STATUS_COUNT;
    s->tickets_by_status =
        tq_arena_memdup(ARENA(r), st.tickets_by_status, sizeof(st.tickets_by_status));
    s->n_messages_by_channel = TQ_CHANNEL_COUNT;
    s->messages_by_channel =
        tq_arena_memdup(ARENA(r), st.messages_by_channel, sizeof(st.messages_by_channel));
    if (r->tenant_id != 0) {
        uint64_t *ids = aalloc(r, TQ_QUEUES_PER_TENANT_REPLY_MAX * sizeof(*ids));
        uint32_t n =
            tq_state_queue_ids(r->srv->state, r->tenant_id, ids, TQ_QUEUES_PER_TENANT_REPLY_MAX);
        if (n > TQ_QUEUES_PER_TENANT_REPLY_MAX) n = TQ_QUEUES_PER_TENANT_REPLY_MAX;
        s->queue_depths = aalloc(r, (n + 1) * sizeof(*s->queue_depths));
        for (uint32_t i = 0; i < n; i++) {
            struct tq_queue_view qv;
            if (tq_state_queue_get(r->srv->state, r->tenant_id, ids[i], &qv) != TQ_OK) continue;
            s->queue_depths[s->n_queue_depths++] = queue_to_wire(r, &qv);
        }
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_STATS;
    r->resp->stats = s;
    return TQ_OK;
}

static enum tq_err op_consumer_ack(struct req *r) {
    const Ticketq__ConsumerAck *m = r->msg->consumer_ack;
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_CONSUMER_ACK);
    cmd.u.consumer_ack.name = S(m->consumer);
    cmd.u.consumer_ack.lsn = m->lsn;
    return mutate(r, &cmd, NULL);
}

static enum tq_err op_subscribe(struct req *r) {
    const Ticketq__Subscribe *m = r->msg->subscribe;
    if (r->in_batch) return fail(r, TQ_ERR_INVALID_ARGUMENT, "Subscribe cannot be batched");
    if (r->conn->sub.active) {
        return fail(r, TQ_ERR_FAILED_PRECONDITION, "this connection already has a subscription");
    }
    uint32_t mask = 0;
    for (size_t i = 0; i < m->n_types; i++) {
        if ((int)m->types[i] < (int)TQ_EVENT_TENANT_CREATED ||
            (int)m->types[i] > (int)TQ_EVENT_CUSTOMER_ERASED) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "types[%zu] out of range", i);
        }
        mask |= 1u << m->types[i];
    }
    uint64_t from = r->srv->lsn_staged; /* default: only what happens from now on */
    if (m->consumer != NULL && m->consumer[0] != '\0') {
        from = tq_state_consumer_lsn(r->srv->state, r->tenant_id, S(m->consumer));
        if (m->has_from_lsn && m->from_lsn > from) from = m->from_lsn;
    } else if (m->has_from_lsn) {
        from = m->from_lsn;
    }
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_EVENTS;
    r->resp->events = aalloc(r, sizeof(*r->resp->events));
    ticketq__event_batch__init(r->resp->events);
    r->resp->has_lsn = true;
    r->resp->lsn = from;
    tq_sub_start(r->srv, r->conn, r->msg->id, r->tenant_id, from, mask,
                 m->has_ticket_id ? m->ticket_id : 0, m->has_queue_id ? m->queue_id : 0);
    return TQ_OK;
}

static enum tq_err op_unsubscribe(struct req *r) {
    if (r->in_batch) return fail(r, TQ_ERR_INVALID_ARGUMENT, "Unsubscribe cannot be batched");
    tq_sub_stop(r->srv, r->conn);
    return TQ_OK;
}

/* Answers a SnapshotNow held on its connection (arg: connection index << 32 | generation)
 * once server/snapshot.c has written the snapshot, or failed to. */
static void snapshot_answer(struct tq_server *srv, uint64_t arg, uint64_t lsn,
                            const struct tq_error *error) {
    uint32_t index = (uint32_t)(arg >> 32), gen = (uint32_t)arg;
    if (index >= srv->conn_cap) return;
    struct tq_conn *conn = &srv->conns[index];
    if (!conn->in_use || conn->gen != gen || conn->closing || !conn->snap_wait) return;
    conn->snap_wait = false;
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    Ticketq__Error err = TICKETQ__ERROR__INIT;
    resp.id = conn->snap_request_id;
    int op = TICKETQ__REQUEST__OP_SNAPSHOT_NOW;
    if (error != NULL) {
        err.code = (Ticketq__ErrorCode)tq_dispatch_wire_code(error->code);
        err.message = (char *)(uintptr_t)error->msg;
        resp.error = &err;
        tq_metrics_error(srv->metrics, op);
    } else {
        resp.has_lsn = true;
        resp.lsn = lsn;
    }
    if (!tq_conn_queue_frame(conn, &resp.base, srv->lsn_staged, op, true, conn->snap_start_us,
                             tq_dispatch_send_queue_max(srv))) {
        conn->close_after_send = true; /* over the send-queue bound: give up on this client */
    }
}

/* Background snapshot (server/snapshot.c): the connection holds until it is durable, so its
 * later requests are answered after it; every other connection keeps being served. */
static enum tq_err op_snapshot_now(struct req *r) {
    if (r->in_batch) return fail(r, TQ_ERR_INVALID_ARGUMENT, "SnapshotNow cannot be batched");
    struct tq_error error;
    uint64_t arg = ((uint64_t)r->conn->index << 32) | r->conn->gen;
    if (tq_snapshot_request(r->srv, snapshot_answer, arg, &error) != TQ_OK) {
        return fail_err(r, &error);
    }
    r->conn->snap_wait = true;
    r->conn->snap_request_id = r->msg->id;
    r->conn->snap_start_us = r->start_us;
    r->held = true;
    return TQ_OK;
}

static enum tq_err op_customer_erase(struct req *r) {
    struct tq_cmd cmd = new_cmd(r, TQ_CMD_CUSTOMER_ERASE);
    cmd.u.customer_erase.customer_id = r->msg->customer_erase->customer_id;
    /* apply validates (NOT_FOUND, FAILED_PRECONDITION if erased already) before it mutates */
    return mutate(r, &cmd, NULL);
}

static Ticketq__CompactStatusResult *compact_status_of(struct req *r) {
    struct tq_compaction_status st;
    tq_compaction_status(r->srv, &st);
    Ticketq__CompactStatusResult *m = aalloc(r, sizeof(*m));
    ticketq__compact_status_result__init(m);
    m->running = st.running;
    m->phase = tq_arena_memdup(ARENA(r), st.phase, strlen(st.phase) + 1);
#define SET(field_, value_)                                                                        \
    do {                                                                                           \
        m->has_##field_ = true;                                                                    \
        m->field_ = (value_);                                                                      \
    } while (0)
    SET(snapshot_lsn, st.snapshot_lsn);
    SET(segments_total, st.segments_total);
    SET(segments_done, st.segments_done);
    SET(segments_rewritten, st.segments_rewritten);
    SET(records_redacted, st.records_redacted);
    SET(records_erased, st.records_erased);
    SET(records_retained_out, st.records_retained_out);
    SET(records_archived, st.records_archived);
    SET(customers_erased, st.customers_erased);
    SET(snapshots_removed, st.snapshots_removed);
    SET(bytes_before, st.bytes_before);
    SET(bytes_after, st.bytes_after);
    SET(io_bytes, st.io_bytes);
    SET(elapsed_ms, st.elapsed_ms);
    SET(loop_stall_us, st.loop_stall_us);
    SET(runs, st.runs);
#undef SET
    if (st.failed) m->error = make_error(ARENA(r), st.error_code, st.error_msg);
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_COMPACT;
    r->resp->compact = m;
    return m;
}

static enum tq_err op_compact(struct req *r) {
    const Ticketq__Compact *m = r->msg->compact;
    if (r->in_batch) return fail(r, TQ_ERR_INVALID_ARGUMENT, "Compact cannot be batched");
    struct tq_compaction_request q;
    memset(&q, 0, sizeof(q));
    q.tenant_id = r->tenant_id;
    q.erase = m->has_erase ? m->erase : true;
    q.compress = m->has_compress ? m->compress : true;
    q.retention_days = m->has_retention_days ? m->retention_days : 0;
    q.io_bytes_per_sec = m->has_io_bytes_per_sec ? m->io_bytes_per_sec : 0;
    if (q.retention_days > 36500) {
        return fail(r, TQ_ERR_INVALID_ARGUMENT, "retention_days %u exceeds 36500",
                    q.retention_days);
    }
    if (m->archive_dir != NULL && m->archive_dir[0] != '\0') {
        if (strlen(m->archive_dir) >= sizeof(q.archive_dir)) {
            return fail(r, TQ_ERR_INVALID_ARGUMENT, "archive_dir longer than %zu bytes",
                        sizeof(q.archive_dir) - 1);
        }
        snprintf(q.archive_dir, sizeof(q.archive_dir), "%s", m->archive_dir);
    }
    struct tq_error error;
    tq_error_clear(&error);
    /* Answered at once (phase "snapshot"); the snapshot's LSN shows in CompactStatus. */
    if (tq_compaction_start(r->srv, &q, &error) != TQ_OK) return fail_err(r, &error);
    (void)compact_status_of(r);
    return TQ_OK;
}

static enum tq_err op_compact_status(struct req *r) {
    (void)compact_status_of(r);
    return TQ_OK;
}

static enum tq_err op_auth(struct req *r) {
    const char *token = r->msg->auth->token;
    size_t len = token ? strnlen(token, TQ_AUTH_TOKEN_BYTES_MAX + 1) : 0;
    r->sess->authed = false; /* a failed Auth leaves the connection unauthenticated */
    if (r->conn->sub.active) tq_sub_stop(r->srv, r->conn);
    if (len == 0 || len > TQ_AUTH_TOKEN_BYTES_MAX) {
        return fail(r, TQ_ERR_UNAUTHENTICATED, "unknown or revoked token");
    }
    uint8_t hash[32];
    tq_auth_token_hash(token, len, hash);
    struct tq_token_view tv;
    if (tq_state_token_find(r->srv->state, hash, &tv) != TQ_OK || tv.revoked) {
        tq_metrics_count(r->srv->metrics, TQ_METRIC_AUTH_FAILURES);
        return fail(r, TQ_ERR_UNAUTHENTICATED, "unknown or revoked token");
    }
    r->sess->authed = true;
    r->sess->token_id = tv.token_id;
    r->sess->role = tv.role;
    r->sess->tenant_id = tv.tenant_id;
    r->sess->agent_id = tv.agent_id;
    Ticketq__AuthResult *a = aalloc(r, sizeof(*a));
    ticketq__auth_result__init(a);
    a->role = (Ticketq__Role)tv.role;
    a->has_tenant_id = tv.tenant_id != 0;
    a->tenant_id = tv.tenant_id;
    a->has_agent_id = tv.agent_id != 0;
    a->agent_id = tv.agent_id;
    a->has_token_id = true;
    a->token_id = tv.token_id;
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_AUTH;
    r->resp->auth = a;
    return TQ_OK;
}

/* ---- the gate ----------------------------------------------------------------------------- */

static enum tq_err handle(struct req *r);
static enum tq_err find_rule(struct req *r);
static enum tq_err gate(struct req *r);

/* Runs n Ingests (the ops of a Batch made only of Ingests, or a run of single Ingest requests
 * collected across connections in one turn: see tq_dispatch_flush) in two passes, so that the
 * state's cache misses overlap. Applying an inbound message walks a chain of dependent loads
 * in tables far larger than the cache (identity slot, identity, customer, ticket, heap
 * entries); applied one after the other, each ingest waited for every link in turn (apply was
 * ~60% of ticketqd's cycles, mostly those waits). The state offers a pure, staged prefetch
 * (tq_state_prefetch, state.h) that recovery already uses through tq_state_window; here it
 * runs TQ_STATE_PREFETCH_AHEAD ops ahead of the op being applied, on the same schedule as the
 * window (stage 0 when an op enters the window, stage k for the op k * GAP entries behind).
 *   Pass 1, in order: the gate (rule, token, role, tenant) and the command of every op. No
 *     ingest changes anything the gate reads (tokens, roles, tenants), and building a command
 *     reads no state, so this equals running gate, build and apply op by op.
 *   Pass 2, in order: prefetch ahead, apply, and (answer: a run of requests) queue the op's
 *     response right after its apply, so its wait_lsn is the one of op-by-op dispatch. An op
 *     refused in pass 1 keeps its error and is skipped. Prefetching never changes a result
 *     (state.h), so the responses, the log and the events are exactly those of the op-by-op
 *     path. */
static void run_answer(struct req *k);

static void ingest_many(struct req *kids, size_t n, bool answer) {
    TQ_ASSERT(n > 0);
    struct tq_server *srv = kids[0].srv;
    struct tq_cmd *cmds = tq_arena_alloc(&srv->arena, n * sizeof(*cmds));
    struct tq_state_prefetch_hint *hints = tq_arena_alloc(&srv->arena, n * sizeof(*hints));
    bool *ready = tq_arena_alloc(&srv->arena, n * sizeof(*ready));
    for (size_t i = 0; i < n; i++) {
        struct req *k = &kids[i];
        if (i > 0) k->rule = kids[i - 1].rule;
        TQ_ASSERT(k->msg->op_case == TICKETQ__REQUEST__OP_INGEST);
        ready[i] = find_rule(k) == TQ_OK && gate(k) == TQ_OK && ingest_build(k, &cmds[i]) == TQ_OK;
        /* the command must be final before stage 0 hashes its keys: mutate's defaulting of
         * the tenant (a no-op for a tenant-scoped op that passed the gate) happens here */
        if (ready[i] && cmds[i].tenant_id == 0) cmds[i].tenant_id = k->tenant_id;
    }
    size_t pushed = 0; /* ops whose stage 0 ran */
    for (size_t a = 0; a < n; a++) {
        for (; pushed < n && pushed - a < TQ_STATE_WINDOW_RECORDS; pushed++) {
            memset(&hints[pushed], 0, sizeof(hints[pushed]));
            if (ready[pushed]) tq_state_prefetch(srv->state, &cmds[pushed], 0, &hints[pushed]);
            for (unsigned st = 1; st < TQ_STATE_PREFETCH_STAGES; st++) {
                size_t back = (size_t)st * TQ_STATE_PREFETCH_GAP;
                if (pushed < back || pushed - back < a) break;
                size_t y = pushed - back;
                if (ready[y]) tq_state_prefetch(srv->state, &cmds[y], st, &hints[y]);
            }
        }
        if (answer && kids[a].conn->run_dead) {
            /* its connection is being closed: one-at-a-time would never have read this one */
            TQ_ASSERT(kids[a].conn->inflight > 0);
            kids[a].conn->inflight--;
            continue;
        }
        if (ready[a]) (void)mutate_hinted(&kids[a], &cmds[a], &hints[a], NULL);
        if (answer) run_answer(&kids[a]);
    }
}

/* ---- the run: single Ingest requests of one turn, applied together ------------------------ */

/* Single Ingest requests arrive one per frame (pipelined clients, the open loop, the ingest
 * share of a mixed load), so each paid the state's cache misses alone. tq_dispatch_frame
 * therefore collects consecutive single Ingests, across connections and in the order the turn
 * dispatches them, and ingest_many applies them together; any other request, the bound, a
 * frame the log might not take, or the loop (before a reap, at the end of the parse phase)
 * flushes the run first. Responses are queued in order right after each apply, so every
 * response, LSN, event and record is exactly that of dispatching the same frames one at a
 * time in the same order; per connection, order is the arrival order. A collected request
 * counts in conn->inflight (the parse's backpressure) until its response is queued. The
 * decoded requests live in srv->arena, which is therefore reset only by the flush. */
struct tq_dispatch_run {
    uint32_t count;
    uint64_t need_bytes; /* twice the collected frames' bytes: the log room they may take */
    struct req reqs[TQ_INGEST_RUN_MAX];
};

static void run_answer(struct req *k) {
    struct tq_server *srv = k->srv;
    struct tq_conn *conn = k->conn;
    TQ_ASSERT(conn->inflight > 0);
    TQ_ASSERT(!conn->run_dead);
    conn->inflight--; /* counted when collected; tq_conn_queue_frame counts it again */
    if (k->resp->error != NULL) tq_metrics_error(srv->metrics, TICKETQ__REQUEST__OP_INGEST);
    if (!tq_conn_queue_frame(conn, &k->resp->base, srv->lsn_staged, TICKETQ__REQUEST__OP_INGEST,
                             true, k->start_us, tq_dispatch_send_queue_max(srv))) {
        conn->run_dead = true; /* the loop closes it; its later ops of the run are skipped */
        srv->run_dead_conns++;
    }
}

/* Applies and answers the run; the arena keeps its allocations (the caller resets it). */
static void run_flush(struct tq_server *srv) {
    struct tq_dispatch_run *run = srv->run;
    if (run->count == 0) return;
    TQ_ASSERT(run->count <= TQ_INGEST_RUN_MAX);
    TQ_ASSERT(srv->batch_now_ms == 0); /* one clock read per op, as one at a time */
    uint32_t n = run->count;
    run->count = 0;
    run->need_bytes = 0;
    ingest_many(run->reqs, n, true);
}

void tq_dispatch_flush(struct tq_server *srv) {
    if (srv->run->count == 0) return;
    run_flush(srv);
    tq_arena_reset(&srv->arena);
}

static enum tq_err op_batch(struct req *r) {
    if (r->in_batch) return fail(r, TQ_ERR_INVALID_ARGUMENT, "batches do not nest");
    const Ticketq__Batch *b = r->msg->batch;
    Ticketq__BatchResult *res = aalloc(r, sizeof(*res));
    ticketq__batch_result__init(res);
    res->results = aalloc(r, (b->n_ops + 1) * sizeof(*res->results));
    struct req *kids = tq_arena_alloc(ARENA(r), (b->n_ops + 1) * sizeof(*kids));
    bool ingests_only = b->n_ops > 1;
    for (size_t i = 0; i < b->n_ops && ingests_only; i++) {
        ingests_only = b->ops[i]->op_case == TICKETQ__REQUEST__OP_INGEST;
    }
    TQ_ASSERT(r->srv->batch_now_ms == 0); /* batches do not nest */
    r->srv->batch_now_ms = tq_now_ms();
    for (size_t i = 0; i < b->n_ops; i++) {
        Ticketq__Request *sub = b->ops[i];
        if (!sub->has_tenant_id && r->msg->has_tenant_id) {
            sub->has_tenant_id = true;
            sub->tenant_id = r->msg->tenant_id;
        }
        Ticketq__Response *sr = tq_arena_alloc(ARENA(r), sizeof(*sr)); /* init sets every field */
        ticketq__response__init(sr);
        sr->id = sub->id;
        kids[i] = (struct req){.srv = r->srv,
                               .conn = r->conn,
                               .sess = r->sess,
                               .msg = sub,
                               .resp = sr,
                               .rule = i > 0 ? kids[i - 1].rule : NULL,
                               .in_batch = true};
        res->results[res->n_results++] = sr;
        if (ingests_only) continue; /* ingest_many runs them below */
        if (sub->op_case == TICKETQ__REQUEST__OP_AUTH) {
            fail(&kids[i], TQ_ERR_INVALID_ARGUMENT, "Auth cannot be batched");
        } else {
            (void)handle(&kids[i]);
        }
    }
    if (ingests_only) ingest_many(kids, b->n_ops, false);
    r->srv->batch_now_ms = 0;
    r->resp->result_case = TICKETQ__RESPONSE__RESULT_BATCH;
    r->resp->batch = res;
    return TQ_OK;
}

static enum tq_err resolve_tenant(struct req *r) {
    const struct tq_auth_rule *rule = r->rule;
    const Ticketq__Request *m = r->msg;
    r->tenant_id = 0;
    if (rule->scope == TQ_SCOPE_NONE) return TQ_OK;
    if (r->sess->role == TQ_ROLE_SERVER_ADMIN) {
        r->tenant_id = m->has_tenant_id ? m->tenant_id : 0;
        if (r->tenant_id == 0) {
            if (rule->scope == TQ_SCOPE_TENANT) {
                return fail(r, TQ_ERR_INVALID_ARGUMENT,
                            "tenant_id is required (a server admin names the tenant)");
            }
            return TQ_OK;
        }
    } else {
        if (m->has_tenant_id && m->tenant_id != r->sess->tenant_id) {
            return fail(r, TQ_ERR_NOT_FOUND, "tenant %" PRIu64 " not found", m->tenant_id);
        }
        r->tenant_id = r->sess->tenant_id;
    }
    struct tq_tenant_view tv;
    if (!tq_state_tenant_get(r->srv->state, r->tenant_id, &tv)) {
        return fail(r, TQ_ERR_NOT_FOUND, "tenant %" PRIu64 " not found", r->tenant_id);
    }
    return TQ_OK;
}

/* Looks up r's rule (a batch hands each op the previous op's rule: the ops of a batch are
 * nearly always of one kind, and the lookup is a scan of the role table). */
static enum tq_err find_rule(struct req *r) {
    int op = (int)r->msg->op_case;
    if (r->rule == NULL || r->rule->op != op) r->rule = tq_auth_rule(op);
    if (r->rule == NULL) return fail(r, TQ_ERR_INVALID_ARGUMENT, "unknown or missing operation");
    return TQ_OK;
}

/* The gate after the rule is known, for every op but Auth: authenticated, token not revoked,
 * role allowed, tenant resolved. On failure the response carries the error. */
static enum tq_err gate(struct req *r) {
    TQ_ASSERT(r->rule != NULL);
    TQ_ASSERT(r->msg->op_case != TICKETQ__REQUEST__OP_AUTH);
    if (!r->sess->authed) return fail(r, TQ_ERR_UNAUTHENTICATED, "authenticate first (Auth)");
    /* Revocation takes effect at once: re-check the token on every request. */
    struct tq_token_view tv;
    if (!tq_state_token_get(r->srv->state, r->sess->token_id, &tv) || tv.revoked) {
        r->sess->authed = false;
        if (r->conn->sub.active) tq_sub_stop(r->srv, r->conn);
        return fail(r, TQ_ERR_UNAUTHENTICATED, "token revoked");
    }
    if ((r->rule->roles & TQ_ROLE_BIT(r->sess->role)) == 0) {
        return fail(r, TQ_ERR_PERMISSION_DENIED, "role %s may not %s", tq_role_name(r->sess->role),
                    r->rule->name);
    }
    if (resolve_tenant(r) != TQ_OK) return TQ_ERR_NOT_FOUND;
    return TQ_OK;
}

static enum tq_err handle(struct req *r) {
    const Ticketq__Request *m = r->msg;
    if (find_rule(r) != TQ_OK) return TQ_ERR_INVALID_ARGUMENT;
    if (m->op_case == TICKETQ__REQUEST__OP_AUTH) return op_auth(r);
    enum tq_err err = gate(r);
    if (err != TQ_OK) return err;
    switch (m->op_case) {
    case TICKETQ__REQUEST__OP_PING: return TQ_OK;
    case TICKETQ__REQUEST__OP_BATCH: return op_batch(r);
    case TICKETQ__REQUEST__OP_TENANT_CREATE: return op_tenant_create(r);
    case TICKETQ__REQUEST__OP_TENANT_SETTINGS: return op_tenant_settings(r);
    case TICKETQ__REQUEST__OP_SLA_POLICIES_SET: return op_sla_policies_set(r);
    case TICKETQ__REQUEST__OP_BUSINESS_HOURS_SET: return op_business_hours_set(r);
    case TICKETQ__REQUEST__OP_TOKEN_ISSUE: return op_token_issue(r);
    case TICKETQ__REQUEST__OP_TOKEN_REVOKE: return op_token_revoke(r);
    case TICKETQ__REQUEST__OP_QUEUE_CREATE: return op_queue_create(r);
    case TICKETQ__REQUEST__OP_QUEUE_UPDATE: return op_queue_update(r);
    case TICKETQ__REQUEST__OP_QUEUE_LIST: return op_queue_list(r);
    case TICKETQ__REQUEST__OP_QUEUES_GET: return op_queues_get(r);
    case TICKETQ__REQUEST__OP_AGENT_CREATE: return op_agent_create(r);
    case TICKETQ__REQUEST__OP_AGENT_UPDATE: return op_agent_update(r);
    case TICKETQ__REQUEST__OP_AGENT_GET: return op_agent_get(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_CREATE: return op_customer_create(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_GET: return op_customer_get(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_LOOKUP: return op_customer_lookup(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_LINK: return op_customer_link(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_MERGE: return op_customer_merge(r);
    case TICKETQ__REQUEST__OP_INGEST: return op_ingest(r);
    case TICKETQ__REQUEST__OP_REPLY: return op_reply(r);
    case TICKETQ__REQUEST__OP_TICKET_UPDATE: return op_ticket_update(r);
    case TICKETQ__REQUEST__OP_CLAIM: return op_claim(r);
    case TICKETQ__REQUEST__OP_RELEASE: return op_release(r);
    case TICKETQ__REQUEST__OP_TRANSFER: return op_transfer(r);
    case TICKETQ__REQUEST__OP_TICKET_MERGE: return op_ticket_merge(r);
    case TICKETQ__REQUEST__OP_TICKET_GET: return op_ticket_get(r);
    case TICKETQ__REQUEST__OP_SLA_NEAREST: return op_sla_nearest(r);
    case TICKETQ__REQUEST__OP_OUTBOX_TAKE: return op_outbox_take(r);
    case TICKETQ__REQUEST__OP_OUTBOX_ACK: return op_outbox_ack(r);
    case TICKETQ__REQUEST__OP_STATS: return op_stats(r);
    case TICKETQ__REQUEST__OP_SUBSCRIBE: return op_subscribe(r);
    case TICKETQ__REQUEST__OP_UNSUBSCRIBE: return op_unsubscribe(r);
    case TICKETQ__REQUEST__OP_CONSUMER_ACK: return op_consumer_ack(r);
    case TICKETQ__REQUEST__OP_SNAPSHOT_NOW: return op_snapshot_now(r);
    case TICKETQ__REQUEST__OP_CUSTOMER_ERASE: return op_customer_erase(r);
    case TICKETQ__REQUEST__OP_COMPACT: return op_compact(r);
    case TICKETQ__REQUEST__OP_COMPACT_STATUS: return op_compact_status(r);
    case TICKETQ__REQUEST__OP_AUTH:
    case TICKETQ__REQUEST__OP__NOT_SET:
    default: break;
    }
    return fail(r, TQ_ERR_INVALID_ARGUMENT, "unknown or missing operation");
}

void tq_dispatch_token_text(const uint8_t secret[TQ_TOKEN_SECRET_BYTES],
                            char out[TQ_TOKEN_TEXT_BYTES + 1]) {
    static const char hex[] = "0123456789abcdef";
    memcpy(out, TQ_TOKEN_PREFIX, 3);
    for (unsigned i = 0; i < TQ_TOKEN_SECRET_BYTES; i++) {
        out[3 + 2 * i] = hex[secret[i] >> 4];
        out[3 + 2 * i + 1] = hex[secret[i] & 15];
    }
    out[TQ_TOKEN_TEXT_BYTES] = '\0';
}

bool tq_dispatch_queue_error(struct tq_server *srv, struct tq_conn *conn, uint64_t id,
                             enum tq_err code, const char *msg) {
    tq_dispatch_flush(srv); /* the run's requests came first, and the reset below ends them */
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = id;
    resp.error = make_error(&srv->arena, code, msg);
    bool ok = tq_conn_queue_frame(conn, &resp.base, srv->lsn_staged, -1, false, 0,
                                  tq_dispatch_send_queue_max(srv));
    tq_arena_reset(&srv->arena);
    return ok;
}

enum tq_dispatch_status tq_dispatch_frame(struct tq_server *srv, struct tq_conn *conn,
                                          const uint8_t *payload, uint32_t len, uint64_t start_us) {
    TQ_ASSERT(conn->kind == TQ_CONN_CLIENT);
    TQ_ASSERT(payload != NULL && len > 0);
    /* Backpressure on the log: if it cannot take a frame's worth of records now but a batch
     * is in flight, wait for it instead of refusing (the frame stays buffered). */
    uint64_t need = (uint64_t)len * 2 + TQ_EVENTS_RECORD_RESERVE_BYTES;
    if (need > TQ_RECORD_BYTES_DEFAULT_MAX) need = TQ_RECORD_BYTES_DEFAULT_MAX;
    struct tq_dispatch_run *run = srv->run;
    if (run->count > 0) {
        /* The run is not applied yet: if the log might not take it and this frame, apply it
         * now, so the check below sees what one-at-a-time dispatch would have seen. The run
         * counts twice its frames' bytes (an ingest's records: its command, shorter than its
         * frame, and an events record of a few hundred bytes); this frame's need adds the
         * events reserve (64 KiB) once, which covers that estimate's slack for a whole run. */
        uint64_t all = run->need_bytes + need;
        if (all > UINT32_MAX || !tq_log_can_append(srv->log, (uint32_t)all)) {
            tq_dispatch_flush(srv);
            if (conn->run_dead) return TQ_DISPATCH_CLOSE;
        }
    }
    if (srv->lsn_staged > tq_log_acked_lsn(srv->log) &&
        !tq_log_can_append(srv->log, (uint32_t)need)) {
        return TQ_DISPATCH_DEFER;
    }
    /* The hot shapes (Ingest, Batches of Ingests) by hand; everything else, and anything
     * unusual about those, by protobuf-c (server/reqdec.c). */
    Ticketq__Request *msg = tq_reqdec_decode(payload, len, &srv->arena);
    if (msg == NULL) {
        ProtobufCAllocator alloc = tq_frame_allocator(&srv->arena);
        msg = ticketq__request__unpack(&alloc, len, payload);
    }
    Ticketq__Response *resp = tq_arena_alloc(&srv->arena, sizeof(*resp));
    ticketq__response__init(resp);
    if (msg != NULL && msg->op_case == TICKETQ__REQUEST__OP_INGEST) {
        resp->id = msg->id;
        TQ_ASSERT(run->count < TQ_INGEST_RUN_MAX);
        run->reqs[run->count++] = (struct req){.srv = srv,
                                               .conn = conn,
                                               .sess = &conn->session,
                                               .msg = msg,
                                               .resp = resp,
                                               .start_us = start_us};
        run->need_bytes += 2ull * len;
        conn->inflight++; /* answered by the flush */
        if (run->count < TQ_INGEST_RUN_MAX) return TQ_DISPATCH_DONE;
        tq_dispatch_flush(srv);
        return conn->run_dead ? TQ_DISPATCH_CLOSE : TQ_DISPATCH_DONE;
    }
    run_flush(srv); /* every other request: after the run (the arena keeps msg) */
    if (conn->run_dead) {
        tq_arena_reset(&srv->arena);
        return TQ_DISPATCH_CLOSE;
    }
    int op = -1;
    struct req r = {.srv = srv,
                    .conn = conn,
                    .sess = &conn->session,
                    .msg = msg,
                    .resp = resp,
                    .start_us = start_us};
    if (msg == NULL) {
        fail(&r, TQ_ERR_INVALID_ARGUMENT, "malformed request (not a ticketq.Request)");
    } else {
        resp->id = msg->id;
        op = (int)msg->op_case;
        if (op < 0 || op >= TQ_AUTH_OP_LIMIT) op = 0;
        (void)handle(&r);
        if (r.defer || r.held) {
            tq_arena_reset(&srv->arena);
            return r.defer ? TQ_DISPATCH_DEFER : TQ_DISPATCH_DONE;
        }
    }
    if (resp->error != NULL) tq_metrics_error(srv->metrics, op < 0 ? 0 : op);
    bool ok = tq_conn_queue_frame(conn, &resp->base, srv->lsn_staged, op < 0 ? 0 : op, true,
                                  start_us, tq_dispatch_send_queue_max(srv));
    tq_arena_reset(&srv->arena);
    return ok ? TQ_DISPATCH_DONE : TQ_DISPATCH_CLOSE;
}

void tq_dispatch_init(struct tq_server *srv) {
    tq_arena_init(&srv->arena, 64 * 1024);
    srv->run = tq_xalloc(sizeof(*srv->run));
    memset(srv->run, 0, sizeof(*srv->run));
    srv->enc_cap = 64 * 1024; /* events records; grows for a TICK with many events */
    srv->enc_buf = tq_xalloc(srv->enc_cap);
    srv->read_cap = 64 * 1024;
    srv->read_buf = tq_xalloc(srv->read_cap);
}

void tq_dispatch_destroy(struct tq_server *srv) {
    if (srv->staged != NULL) tq_free(srv->staged, srv->staged_cap * sizeof(*srv->staged));
    if (srv->staged_bytes != NULL) tq_free(srv->staged_bytes, srv->staged_bytes_cap);
    srv->staged_bytes = NULL;
    if (srv->enc_buf != NULL) tq_free(srv->enc_buf, srv->enc_cap);
    if (srv->read_buf != NULL) tq_free(srv->read_buf, srv->read_cap);
    if (srv->ev != NULL) tq_free(srv->ev, srv->ev_cap * sizeof(*srv->ev));
    if (srv->run != NULL) {
        TQ_ASSERT(srv->run->count == 0);
        tq_free(srv->run, sizeof(*srv->run));
        srv->run = NULL;
    }
    tq_arena_destroy(&srv->arena);
    srv->staged = NULL;
    srv->enc_buf = srv->read_buf = NULL;
    srv->ev = NULL;
}
