/* server/state/codec.c: the log record payload of a command (tq_cmd_encode / tq_cmd_decode).
 *
 * Byte layout (all integers little-endian, no padding, no alignment):
 *
 *   offset  size  field
 *   0       1     version (TQ_CMD_CODEC_VERSION = 1)
 *   1       1     type (enum tq_cmd_type, 1..TQ_CMD_TYPE_MAX)
 *   2       8     now_ms
 *   10      8     tenant_id
 *   18      8     actor_agent_id
 *   26      ...   the fields of the type, in the order of struct tq_cmd's union member
 *
 * Field encodings: bool and small enums u8; u32 and u64 as such; a string is u32 length +
 * bytes (no NUL); an array is u32 count + elements. A calendar (BUSINESS_HOURS_SET) is tz name
 * (string), base offset (i32), transition count (u32) + (i64 at_s, i32 offset_s) each, then for
 * each weekday a u8 count + (u16 start, u16 end) each, then holiday count (u32) + i32 each.
 *
 * Decode never trusts the bytes: every read is bounds-checked, every enum range-checked, every
 * count bounded by its limit (and by the bytes left) before anything is allocated, and trailing
 * bytes are an error. It is a pure function of (bytes, len) plus arena allocations, so a fuzz
 * target can drive it directly. Decoded strings point into the buffer; arrays live in the arena.
 */
#include "state.h"
#include "tq_assert.h"

#include <string.h>

#define TQ_CMD_CODEC_VERSION 1u

/* ---- writer: counts when buf is NULL ------------------------------------------------- */

struct wbuf {
    uint8_t *buf;
    size_t cap, len;
};

static void put_bytes(struct wbuf *w, const void *p, size_t n) {
    if (w->buf != NULL && w->len + n <= w->cap && n > 0) memcpy(w->buf + w->len, p, n);
    w->len += n;
}
static void put_u8(struct wbuf *w, uint64_t v) {
    uint8_t b = (uint8_t)v;
    put_bytes(w, &b, 1);
}
static void put_u16(struct wbuf *w, uint64_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put_bytes(w, b, 2);
}
static void put_u32(struct wbuf *w, uint64_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put_bytes(w, b, 4);
}
static void put_u64(struct wbuf *w, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put_bytes(w, b, 8);
}
static void put_str(struct wbuf *w, struct tq_str s) {
    put_u32(w, s.len);
    put_bytes(w, s.ptr, s.len);
}

static void put_attachments(struct wbuf *w, uint32_t n, const struct tq_attachment *a) {
    put_u32(w, n);
    for (uint32_t i = 0; i < n; i++) {
        put_str(w, a[i].key);
        put_str(w, a[i].name);
        put_str(w, a[i].mime_type);
        put_u64(w, a[i].size_bytes);
    }
}

static void put_strs(struct wbuf *w, uint32_t n, const struct tq_str *s) {
    put_u32(w, n);
    for (uint32_t i = 0; i < n; i++)
        put_str(w, s[i]);
}

static void put_calendar(struct wbuf *w, const struct tq_calendar *c) {
    size_t name_len = strnlen(c->tz_name, sizeof(c->tz_name));
    put_str(w, (struct tq_str){c->tz_name, (uint32_t)name_len});
    put_u32(w, (uint32_t)c->base_offset_s);
    put_u32(w, c->tz_transition_count);
    for (uint32_t i = 0; i < c->tz_transition_count && i < TQ_CALENDAR_TZ_TRANSITIONS_MAX; i++) {
        put_u64(w, (uint64_t)c->tz_transitions[i].at_s);
        put_u32(w, (uint32_t)c->tz_transitions[i].offset_s);
    }
    for (int d = 0; d < 7; d++) {
        put_u8(w, c->interval_count[d]);
        for (uint32_t i = 0; i < c->interval_count[d] && i < TQ_CALENDAR_INTERVALS_PER_DAY_MAX;
             i++) {
            put_u16(w, c->intervals[d][i].start_minute);
            put_u16(w, c->intervals[d][i].end_minute);
        }
    }
    put_u32(w, c->holiday_count);
    for (uint32_t i = 0; i < c->holiday_count && i < TQ_CALENDAR_HOLIDAYS_MAX; i++) {
        put_u32(w, (uint32_t)c->holidays[i]);
    }
}

static void encode_body(const struct tq_cmd *cmd, struct wbuf *w) {
    put_u8(w, TQ_CMD_CODEC_VERSION);
    put_u8(w, (uint64_t)cmd->type);
    put_u64(w, cmd->now_ms);
    put_u64(w, cmd->tenant_id);
    put_u64(w, cmd->actor_agent_id);
    const __typeof__(cmd->u) *u = &cmd->u;
    switch (cmd->type) {
    case TQ_CMD_TENANT_CREATE: put_str(w, u->tenant_create.name); break;
    case TQ_CMD_TENANT_SETTINGS:
        put_u64(w, u->tenant_settings.auto_close_ms);
        put_u32(w, u->tenant_settings.sla_warning_permille);
        for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
            put_u64(w, u->tenant_settings.reply_window_ms[i]);
        for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
            put_u64(w, u->tenant_settings.default_queue_id[i]);
        }
        put_u32(w, u->tenant_settings.outbox_attempts_max);
        break;
    case TQ_CMD_SLA_POLICIES_SET:
        put_u32(w, u->sla_policies_set.count);
        for (uint32_t i = 0; i < u->sla_policies_set.count; i++) {
            const struct tq_sla_policy *p = &u->sla_policies_set.policies[i];
            put_str(w, p->name);
            put_u64(w, p->queue_id);
            put_u32(w, (uint32_t)p->channel);
            put_str(w, p->tag);
            for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
                for (int q = 0; q < TQ_PRIORITY_COUNT; q++)
                    put_u64(w, p->targets.target_ms[m][q]);
            }
            put_u8(w, p->business_hours);
        }
        break;
    case TQ_CMD_BUSINESS_HOURS_SET: put_calendar(w, u->business_hours_set.calendar); break;
    case TQ_CMD_TOKEN_ISSUE:
        put_u8(w, (uint64_t)u->token_issue.role);
        put_u64(w, u->token_issue.agent_id);
        put_bytes(w, u->token_issue.hash, 32);
        put_str(w, u->token_issue.name);
        break;
    case TQ_CMD_TOKEN_REVOKE: put_u64(w, u->token_revoke.token_id); break;
    case TQ_CMD_QUEUE_CREATE:
    case TQ_CMD_QUEUE_UPDATE:
        put_u64(w, u->queue.queue_id);
        put_str(w, u->queue.name);
        put_u8(w, u->queue.auto_assign);
        put_u64(w, u->queue.assignment_timeout_ms);
        break;
    case TQ_CMD_AGENT_CREATE:
    case TQ_CMD_AGENT_UPDATE:
        put_u64(w, u->agent.agent_id);
        put_str(w, u->agent.name);
        put_u8(w, u->agent.set_presence);
        put_u8(w, (uint64_t)u->agent.presence);
        put_u8(w, u->agent.set_capacity);
        for (int i = 0; i < TQ_CHANNEL_CLASS_COUNT; i++)
            put_u32(w, u->agent.capacity[i]);
        break;
    case TQ_CMD_CUSTOMER_CREATE:
        put_str(w, u->customer_create.name);
        put_str(w, u->customer_create.language);
        put_u8(w, (uint64_t)u->customer_create.channel);
        put_str(w, u->customer_create.external_id);
        break;
    case TQ_CMD_CUSTOMER_LINK:
        put_u64(w, u->customer_link.customer_id);
        put_u8(w, (uint64_t)u->customer_link.channel);
        put_str(w, u->customer_link.external_id);
        break;
    case TQ_CMD_CUSTOMER_MERGE:
        put_u64(w, u->customer_merge.survivor_id);
        put_u64(w, u->customer_merge.merged_id);
        break;
    case TQ_CMD_CUSTOMER_ERASE: put_u64(w, u->customer_erase.customer_id); break;
    case TQ_CMD_MESSAGE_INGEST:
        put_u8(w, (uint64_t)u->ingest.channel);
        put_str(w, u->ingest.from_external_id);
        put_str(w, u->ingest.customer_name);
        put_str(w, u->ingest.language);
        put_str(w, u->ingest.message_external_id);
        put_u64(w, u->ingest.provider_ts_ms);
        put_u64(w, u->ingest.queue_id);
        put_u8(w, (uint64_t)u->ingest.priority);
        put_str(w, u->ingest.subject);
        put_str(w, u->ingest.body);
        put_attachments(w, u->ingest.attachment_count, u->ingest.attachments);
        put_strs(w, u->ingest.tag_count, u->ingest.tags);
        break;
    case TQ_CMD_MESSAGE_REPLY:
        put_u64(w, u->reply.ticket_id);
        put_u8(w, u->reply.internal_note);
        put_u8(w, u->reply.automated);
        put_u8(w, (uint64_t)u->reply.channel);
        put_u8(w, u->reply.set_status);
        put_u8(w, (uint64_t)u->reply.status);
        put_str(w, u->reply.body);
        put_attachments(w, u->reply.attachment_count, u->reply.attachments);
        break;
    case TQ_CMD_TICKET_UPDATE: {
        const __typeof__(u->ticket_update) *t = &u->ticket_update;
        put_u64(w, t->ticket_id);
        put_u32(w, t->fields);
        put_u8(w, (uint64_t)t->status);
        put_u8(w, (uint64_t)t->priority);
        put_u64(w, t->queue_id);
        put_u64(w, t->assignee_id);
        put_strs(w, t->tags_add_count, t->tags_add);
        put_strs(w, t->tags_remove_count, t->tags_remove);
        put_str(w, t->subject);
        put_u32(w, t->field_count);
        for (uint32_t i = 0; i < t->field_count; i++) {
            put_str(w, t->custom_fields[i].key);
            put_u8(w, (uint64_t)t->custom_fields[i].type);
            put_str(w, t->custom_fields[i].string_value);
            put_u64(w, (uint64_t)t->custom_fields[i].int_value);
        }
        put_u64(w, t->wake_at_ms);
        break;
    }
    case TQ_CMD_TICKET_CLAIM:
        put_u64(w, u->claim.agent_id);
        put_u32(w, u->claim.queue_count);
        for (uint32_t i = 0; i < u->claim.queue_count; i++)
            put_u64(w, u->claim.queue_ids[i]);
        break;
    case TQ_CMD_TICKET_RELEASE: put_u64(w, u->release.ticket_id); break;
    case TQ_CMD_TICKET_TRANSFER:
        put_u64(w, u->transfer.ticket_id);
        put_u64(w, u->transfer.to_queue_id);
        put_u64(w, u->transfer.to_agent_id);
        break;
    case TQ_CMD_TICKET_MERGE:
        put_u64(w, u->ticket_merge.source_id);
        put_u64(w, u->ticket_merge.target_id);
        break;
    case TQ_CMD_OUTBOX_TAKE:
        put_u8(w, (uint64_t)u->outbox_take.channel);
        put_u32(w, u->outbox_take.max);
        put_u64(w, u->outbox_take.lease_ms);
        break;
    case TQ_CMD_OUTBOX_ACK:
        put_u64(w, u->outbox_ack.message_id);
        put_u8(w, (uint64_t)u->outbox_ack.status);
        put_str(w, u->outbox_ack.reason);
        put_str(w, u->outbox_ack.provider_message_id);
        put_u64(w, u->outbox_ack.provider_ts_ms);
        put_u8(w, u->outbox_ack.retry);
        break;
    case TQ_CMD_CONSUMER_ACK:
        put_str(w, u->consumer_ack.name);
        put_u64(w, u->consumer_ack.lsn);
        break;
    case TQ_CMD_TICK: break;
    }
}

size_t tq_cmd_encoded_size(const struct tq_cmd *cmd) {
    struct wbuf w = {NULL, 0, 0};
    encode_body(cmd, &w);
    TQ_ASSERT(w.len >= 26);
    return w.len;
}

size_t tq_cmd_encode(const struct tq_cmd *cmd, uint8_t *buf, size_t cap) {
    TQ_ASSERT(cmd->type >= 1 && cmd->type <= TQ_CMD_TYPE_MAX);
    size_t need = tq_cmd_encoded_size(cmd);
    if (need > cap) return 0;
    struct wbuf w = {buf, cap, 0};
    encode_body(cmd, &w);
    TQ_ASSERT(w.len == need);
    return w.len;
}

/* ---- reader: every read bounds-checked; a failed read sets bad and returns 0 ------------ */

struct rbuf {
    const uint8_t *p;
    size_t len, off;
    bool bad;
    const char *what; /* the first field that failed */
    size_t bad_off;   /* off when it failed (the error message's offset) */
};

/* Records the first failure. Later reads see no bytes left (len is cut to off), so every one of
 * them fails at once without a separate "bad" test on the hot path. */
__attribute__((noinline, cold)) static void fail(struct rbuf *r, const char *what) {
    if (r->bad) return;
    r->bad = true;
    r->what = what;
    r->bad_off = r->off;
    r->len = r->off;
}

static inline bool need(struct rbuf *r, size_t n, const char *what) {
    if (__builtin_expect(n <= r->len - r->off, 1)) return true;
    fail(r, what);
    return false;
}

/* Little-endian loads of n = 1, 2, 4 or 8 bytes; a failed read returns 0 and consumes nothing. */
static inline uint64_t get_le(struct rbuf *r, size_t n, const char *what) {
    if (!need(r, n, what)) return 0;
    const uint8_t *q = r->p + r->off;
    r->off += n;
    uint64_t v;
    if (n == 8) {
        memcpy(&v, q, 8);
    } else if (n == 4) {
        uint32_t w;
        memcpy(&w, q, 4);
        v = w;
    } else if (n == 2) {
        uint16_t w;
        memcpy(&w, q, 2);
        v = w;
    } else {
        TQ_ASSERT(n == 1);
        v = q[0];
    }
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v) >> (64 - 8 * n);
#endif
    return v;
}
static inline uint8_t get_u8(struct rbuf *r, const char *what) {
    return (uint8_t)get_le(r, 1, what);
}
static inline uint16_t get_u16(struct rbuf *r, const char *what) {
    return (uint16_t)get_le(r, 2, what);
}
static inline uint32_t get_u32(struct rbuf *r, const char *what) {
    return (uint32_t)get_le(r, 4, what);
}
static inline uint64_t get_u64(struct rbuf *r, const char *what) {
    return get_le(r, 8, what);
}
static inline bool get_bool(struct rbuf *r, const char *what) {
    uint8_t v = get_u8(r, what);
    if (v > 1) fail(r, what);
    return v == 1;
}
static inline uint32_t get_enum(struct rbuf *r, uint32_t max_inclusive, const char *what) {
    uint8_t v = get_u8(r, what);
    if (v > max_inclusive) fail(r, what);
    return v;
}
static inline struct tq_str get_str(struct rbuf *r, uint32_t max_len, const char *what) {
    struct tq_str s = {"", 0};
    if (!need(r, 4, what)) return s;
    uint32_t n = get_u32(r, what);
    if (n > max_len || !need(r, n, what)) {
        fail(r, what);
        return s;
    }
    s.ptr = (const char *)r->p + r->off;
    s.len = n;
    r->off += n;
    return s;
}
/* A count of elements each at least min_bytes long, bounded by limit and the bytes left. */
static inline uint32_t get_count(struct rbuf *r, uint32_t limit, size_t min_bytes,
                                 const char *what) {
    if (!need(r, 4, what)) return 0;
    uint32_t n = get_u32(r, what);
    if (n > limit || (size_t)n * min_bytes > r->len - r->off) {
        fail(r, what);
        return 0;
    }
    return n;
}

#define STR_MAX_ANY 0xffffffffu

static const struct tq_attachment *get_attachments(struct rbuf *r, struct tq_arena *a,
                                                   uint32_t *count) {
    uint32_t n = get_count(r, TQ_ATTACHMENTS_PER_MESSAGE_MAX, 20, "attachments");
    *count = n;
    if (n == 0) return NULL;
    struct tq_attachment *v = tq_arena_alloc(a, n * sizeof(*v));
    for (uint32_t i = 0; i < n; i++) {
        v[i].key = get_str(r, TQ_NAME_BYTES_MAX * 4, "attachment.key");
        v[i].name = get_str(r, TQ_NAME_BYTES_MAX, "attachment.name");
        v[i].mime_type = get_str(r, TQ_NAME_BYTES_MAX, "attachment.mime_type");
        v[i].size_bytes = get_u64(r, "attachment.size");
    }
    return v;
}

static const struct tq_str *get_strs(struct rbuf *r, struct tq_arena *a, uint32_t limit,
                                     uint32_t *count, const char *what) {
    uint32_t n = get_count(r, limit, 4, what);
    *count = n;
    if (n == 0) return NULL;
    struct tq_str *v = tq_arena_alloc(a, n * sizeof(*v));
    for (uint32_t i = 0; i < n; i++)
        v[i] = get_str(r, TQ_NAME_BYTES_MAX, what);
    return v;
}

static const struct tq_calendar *get_calendar(struct rbuf *r, struct tq_arena *a) {
    struct tq_calendar *c = tq_arena_alloc(a, sizeof(*c));
    memset(c, 0, sizeof(*c));
    struct tq_str name = get_str(r, TQ_CALENDAR_TZ_NAME_BYTES_MAX - 1, "calendar.tz_name");
    if (name.len > 0) memcpy(c->tz_name, name.ptr, name.len);
    if (memchr(name.ptr, '\0', name.len) != NULL) fail(r, "calendar.tz_name"); /* canonical */
    c->base_offset_s = (int32_t)get_u32(r, "calendar.base_offset");
    c->tz_transition_count = get_count(r, TQ_CALENDAR_TZ_TRANSITIONS_MAX, 12, "calendar.tz");
    for (uint32_t i = 0; i < c->tz_transition_count; i++) {
        c->tz_transitions[i].at_s = (int64_t)get_u64(r, "calendar.tz.at");
        c->tz_transitions[i].offset_s = (int32_t)get_u32(r, "calendar.tz.offset");
    }
    for (int d = 0; d < 7; d++) {
        uint8_t n = get_u8(r, "calendar.intervals");
        if (n > TQ_CALENDAR_INTERVALS_PER_DAY_MAX) {
            fail(r, "calendar.intervals");
            n = 0;
        }
        c->interval_count[d] = n;
        for (uint32_t i = 0; i < n; i++) {
            c->intervals[d][i].start_minute = get_u16(r, "calendar.interval");
            c->intervals[d][i].end_minute = get_u16(r, "calendar.interval");
        }
    }
    c->holiday_count = get_count(r, TQ_CALENDAR_HOLIDAYS_MAX, 4, "calendar.holidays");
    for (uint32_t i = 0; i < c->holiday_count; i++) {
        c->holidays[i] = (int32_t)get_u32(r, "calendar.holiday");
    }
    return c;
}

static const struct tq_sla_policy *get_policies(struct rbuf *r, struct tq_arena *a,
                                                uint32_t *count) {
    uint32_t n = get_count(r, TQ_SLA_POLICIES_MAX, 4 + 8 + 4 + 4 + 128 + 1, "policies");
    *count = n;
    if (n == 0) return NULL;
    struct tq_sla_policy *v = tq_arena_alloc(a, n * sizeof(*v));
    memset(v, 0, n * sizeof(*v));
    for (uint32_t i = 0; i < n; i++) {
        v[i].name = get_str(r, TQ_NAME_BYTES_MAX, "policy.name");
        v[i].queue_id = get_u64(r, "policy.queue");
        v[i].channel = (int32_t)get_u32(r, "policy.channel");
        if (v[i].channel < -1 || v[i].channel >= TQ_CHANNEL_COUNT) fail(r, "policy.channel");
        v[i].tag = get_str(r, TQ_NAME_BYTES_MAX, "policy.tag");
        for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
            for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
                v[i].targets.target_ms[m][q] = get_u64(r, "policy.target");
            }
        }
        v[i].business_hours = get_bool(r, "policy.business_hours");
    }
    return v;
}

static void decode_body(struct rbuf *r, struct tq_cmd *cmd, struct tq_arena *a) {
    __typeof__(cmd->u) *u = &cmd->u;
    switch (cmd->type) {
    case TQ_CMD_TENANT_CREATE: u->tenant_create.name = get_str(r, TQ_NAME_BYTES_MAX, "name"); break;
    case TQ_CMD_TENANT_SETTINGS:
        u->tenant_settings.auto_close_ms = get_u64(r, "auto_close_ms");
        u->tenant_settings.sla_warning_permille = get_u32(r, "sla_warning_permille");
        for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
            u->tenant_settings.reply_window_ms[i] = get_u64(r, "reply_window_ms");
        }
        for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
            u->tenant_settings.default_queue_id[i] = get_u64(r, "default_queue_id");
        }
        u->tenant_settings.outbox_attempts_max = get_u32(r, "outbox_attempts_max");
        break;
    case TQ_CMD_SLA_POLICIES_SET:
        u->sla_policies_set.policies = get_policies(r, a, &u->sla_policies_set.count);
        break;
    case TQ_CMD_BUSINESS_HOURS_SET: u->business_hours_set.calendar = get_calendar(r, a); break;
    case TQ_CMD_TOKEN_ISSUE:
        u->token_issue.role = (enum tq_role)get_enum(r, TQ_ROLE_INTEGRATION, "role");
        u->token_issue.agent_id = get_u64(r, "agent_id");
        if (need(r, 32, "hash")) {
            memcpy(u->token_issue.hash, r->p + r->off, 32);
            r->off += 32;
        }
        u->token_issue.name = get_str(r, TQ_NAME_BYTES_MAX, "token.name");
        break;
    case TQ_CMD_TOKEN_REVOKE: u->token_revoke.token_id = get_u64(r, "token_id"); break;
    case TQ_CMD_QUEUE_CREATE:
    case TQ_CMD_QUEUE_UPDATE:
        u->queue.queue_id = get_u64(r, "queue_id");
        u->queue.name = get_str(r, TQ_NAME_BYTES_MAX, "queue.name");
        u->queue.auto_assign = get_bool(r, "auto_assign");
        u->queue.assignment_timeout_ms = get_u64(r, "assignment_timeout_ms");
        break;
    case TQ_CMD_AGENT_CREATE:
    case TQ_CMD_AGENT_UPDATE:
        u->agent.agent_id = get_u64(r, "agent_id");
        u->agent.name = get_str(r, TQ_NAME_BYTES_MAX, "agent.name");
        u->agent.set_presence = get_bool(r, "set_presence");
        u->agent.presence = (enum tq_presence)get_enum(r, TQ_PRESENCE_ONLINE, "presence");
        u->agent.set_capacity = get_bool(r, "set_capacity");
        for (int i = 0; i < TQ_CHANNEL_CLASS_COUNT; i++)
            u->agent.capacity[i] = get_u32(r, "cap");
        break;
    case TQ_CMD_CUSTOMER_CREATE:
        u->customer_create.name = get_str(r, TQ_NAME_BYTES_MAX, "customer.name");
        u->customer_create.language = get_str(r, TQ_NAME_BYTES_MAX, "language");
        u->customer_create.channel = (enum tq_channel)get_enum(r, TQ_CHANNEL_COUNT - 1, "channel");
        u->customer_create.external_id = get_str(r, TQ_EXTERNAL_ID_BYTES_MAX, "external_id");
        break;
    case TQ_CMD_CUSTOMER_LINK:
        u->customer_link.customer_id = get_u64(r, "customer_id");
        u->customer_link.channel = (enum tq_channel)get_enum(r, TQ_CHANNEL_COUNT - 1, "channel");
        u->customer_link.external_id = get_str(r, TQ_EXTERNAL_ID_BYTES_MAX, "external_id");
        break;
    case TQ_CMD_CUSTOMER_MERGE:
        u->customer_merge.survivor_id = get_u64(r, "survivor_id");
        u->customer_merge.merged_id = get_u64(r, "merged_id");
        break;
    case TQ_CMD_CUSTOMER_ERASE: u->customer_erase.customer_id = get_u64(r, "customer_id"); break;
    case TQ_CMD_MESSAGE_INGEST:
        u->ingest.channel = (enum tq_channel)get_enum(r, TQ_CHANNEL_COUNT - 1, "channel");
        u->ingest.from_external_id = get_str(r, TQ_EXTERNAL_ID_BYTES_MAX, "from_external_id");
        u->ingest.customer_name = get_str(r, TQ_NAME_BYTES_MAX, "customer_name");
        u->ingest.language = get_str(r, TQ_NAME_BYTES_MAX, "language");
        u->ingest.message_external_id = get_str(r, TQ_EXTERNAL_ID_BYTES_MAX, "message_ext_id");
        u->ingest.provider_ts_ms = get_u64(r, "provider_ts_ms");
        u->ingest.queue_id = get_u64(r, "queue_id");
        u->ingest.priority = (enum tq_priority)get_enum(r, TQ_PRIORITY_URGENT, "priority");
        u->ingest.subject = get_str(r, TQ_NAME_BYTES_MAX, "subject");
        u->ingest.body = get_str(r, STR_MAX_ANY, "body");
        u->ingest.attachments = get_attachments(r, a, &u->ingest.attachment_count);
        u->ingest.tags = get_strs(r, a, TQ_TAGS_PER_TICKET_MAX, &u->ingest.tag_count, "tags");
        break;
    case TQ_CMD_MESSAGE_REPLY:
        u->reply.ticket_id = get_u64(r, "ticket_id");
        u->reply.internal_note = get_bool(r, "internal_note");
        u->reply.automated = get_bool(r, "automated");
        u->reply.channel = (enum tq_channel)get_enum(r, TQ_CHANNEL_COUNT - 1, "channel");
        u->reply.set_status = get_bool(r, "set_status");
        u->reply.status = (enum tq_ticket_status)get_enum(r, TQ_STATUS_CLOSED, "status");
        u->reply.body = get_str(r, STR_MAX_ANY, "body");
        u->reply.attachments = get_attachments(r, a, &u->reply.attachment_count);
        break;
    case TQ_CMD_TICKET_UPDATE: {
        __typeof__(u->ticket_update) *t = &u->ticket_update;
        t->ticket_id = get_u64(r, "ticket_id");
        t->fields = get_u32(r, "fields");
        if (t->fields >= (TQ_UPDATE_WAKE_AT << 1)) fail(r, "fields");
        t->status = (enum tq_ticket_status)get_enum(r, TQ_STATUS_CLOSED, "status");
        t->priority = (enum tq_priority)get_enum(r, TQ_PRIORITY_URGENT, "priority");
        t->queue_id = get_u64(r, "queue_id");
        t->assignee_id = get_u64(r, "assignee_id");
        t->tags_add = get_strs(r, a, TQ_TAGS_PER_TICKET_MAX, &t->tags_add_count, "tags_add");
        t->tags_remove =
            get_strs(r, a, TQ_TAGS_PER_TICKET_MAX, &t->tags_remove_count, "tags_remove");
        t->subject = get_str(r, TQ_NAME_BYTES_MAX, "subject");
        t->field_count = get_count(r, TQ_CUSTOM_FIELDS_PER_TICKET_MAX, 17, "custom_fields");
        t->custom_fields = NULL;
        if (t->field_count > 0) {
            struct tq_custom_field *f = tq_arena_alloc(a, t->field_count * sizeof(*f));
            for (uint32_t i = 0; i < t->field_count; i++) {
                f[i].key = get_str(r, TQ_NAME_BYTES_MAX, "field.key");
                f[i].type = (enum tq_field_type)get_enum(r, TQ_FIELD_BOOL, "field.type");
                f[i].string_value = get_str(r, TQ_NAME_BYTES_MAX * 4, "field.string");
                f[i].int_value = (int64_t)get_u64(r, "field.int");
            }
            t->custom_fields = f;
        }
        t->wake_at_ms = get_u64(r, "wake_at_ms");
        break;
    }
    case TQ_CMD_TICKET_CLAIM: {
        u->claim.agent_id = get_u64(r, "agent_id");
        uint32_t n = get_count(r, TQ_CLAIM_QUEUES_MAX, 8, "queue_ids");
        u->claim.queue_count = n;
        u->claim.queue_ids = NULL;
        if (n > 0) {
            uint64_t *q = tq_arena_alloc(a, n * sizeof(*q));
            for (uint32_t i = 0; i < n; i++)
                q[i] = get_u64(r, "queue_id");
            u->claim.queue_ids = q;
        }
        break;
    }
    case TQ_CMD_TICKET_RELEASE: u->release.ticket_id = get_u64(r, "ticket_id"); break;
    case TQ_CMD_TICKET_TRANSFER:
        u->transfer.ticket_id = get_u64(r, "ticket_id");
        u->transfer.to_queue_id = get_u64(r, "to_queue_id");
        u->transfer.to_agent_id = get_u64(r, "to_agent_id");
        break;
    case TQ_CMD_TICKET_MERGE:
        u->ticket_merge.source_id = get_u64(r, "source_id");
        u->ticket_merge.target_id = get_u64(r, "target_id");
        break;
    case TQ_CMD_OUTBOX_TAKE:
        u->outbox_take.channel = (enum tq_channel)get_enum(r, TQ_CHANNEL_COUNT - 1, "channel");
        u->outbox_take.max = get_u32(r, "max");
        u->outbox_take.lease_ms = get_u64(r, "lease_ms");
        break;
    case TQ_CMD_OUTBOX_ACK:
        u->outbox_ack.message_id = get_u64(r, "message_id");
        u->outbox_ack.status = (enum tq_delivery)get_enum(r, TQ_DELIVERY_FAILED, "status");
        u->outbox_ack.reason = get_str(r, TQ_NAME_BYTES_MAX * 4, "reason");
        u->outbox_ack.provider_message_id = get_str(r, TQ_EXTERNAL_ID_BYTES_MAX, "provider_id");
        u->outbox_ack.provider_ts_ms = get_u64(r, "provider_ts_ms");
        u->outbox_ack.retry = get_bool(r, "retry");
        break;
    case TQ_CMD_CONSUMER_ACK:
        u->consumer_ack.name = get_str(r, TQ_NAME_BYTES_MAX, "consumer.name");
        u->consumer_ack.lsn = get_u64(r, "lsn");
        break;
    case TQ_CMD_TICK: u->tick.unused = 0; break;
    }
}

enum tq_err tq_cmd_decode(const uint8_t *buf, size_t len, struct tq_cmd *cmd,
                          struct tq_arena *arena, struct tq_error *error) {
    TQ_ASSERT(cmd != NULL);
    TQ_ASSERT(arena != NULL);
    memset(cmd, 0, sizeof(*cmd));
    struct rbuf r = {buf, buf == NULL ? 0 : len, 0, false, NULL, 0};
    uint8_t version = get_u8(&r, "version");
    if (!r.bad && version != TQ_CMD_CODEC_VERSION) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "command record: unknown version %u",
                            (unsigned)version);
    }
    uint8_t type = get_u8(&r, "type");
    if (!r.bad && (type < 1 || type > TQ_CMD_TYPE_MAX)) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "command record: unknown type %u",
                            (unsigned)type);
    }
    cmd->type = (enum tq_cmd_type)type;
    cmd->now_ms = get_u64(&r, "now_ms");
    cmd->tenant_id = get_u64(&r, "tenant_id");
    cmd->actor_agent_id = get_u64(&r, "actor_agent_id");
    if (!r.bad) decode_body(&r, cmd, arena);
    if (!r.bad && r.off != r.len) fail(&r, "trailing bytes");
    if (r.bad) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "command record (%zu bytes): bad %s at %zu", len,
                            r.what, r.bad_off);
    }
    return TQ_OK;
}
