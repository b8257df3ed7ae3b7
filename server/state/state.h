/* server/state/state.h: the ticket state machine (public API of tq_state).
 *
 * The state is a function of the log. Every mutation is a command (struct tq_cmd), encoded into
 * one log record (tq_cmd_encode/tq_cmd_decode) and executed by one deterministic function,
 * tq_state_apply(), which serves the live server, recovery, audit replay and compaction alike.
 * apply is pure: time comes from cmd->now_ms, ids from counters in the state, nothing reads a
 * clock, a random source, a file or a socket. It validates everything first and then mutates,
 * so an error leaves the state exactly as it was (and the server does not log the command).
 *
 * Message bodies stay in the log: the state keeps, per message, the LSN of the record that
 * carried it; readers fetch the record and call tq_cmd_decode to get the body back.
 *
 * apply reports what changed as events (struct tq_event) through a sink: the server streams
 * them to subscribers, replay prints them, tests compare them. The sequence of events a record
 * produces is a deterministic function of the state and the record.
 *
 * Queries return views that point into the state; they are valid until the next apply/free.
 * Threads: one thread owns a state. Everything belongs to a tenant; nothing crosses tenants: a
 * query or command naming an id of another tenant behaves exactly as if the id did not exist.
 * Rules, status table and SLA semantics: docs/tickets.md.
 */
#ifndef TQ_STATE_H
#define TQ_STATE_H

#include "calendar.h"
#include "tq_alloc.h"
#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits (each hit is TQ_ERR_INVALID_ARGUMENT or RESOURCE_EXHAUSTED with the limit named) */
#define TQ_NAME_BYTES_MAX               256 /* tenant/customer/agent/queue names, tags, subjects */
#define TQ_EXTERNAL_ID_BYTES_MAX        256 /* channel identities and provider message ids */
#define TQ_BODY_BYTES_DEFAULT_MAX       (64u * 1024) /* option; a message body, UTF-8 */
#define TQ_TAGS_PER_TICKET_MAX          32
#define TQ_CUSTOM_FIELDS_PER_TICKET_MAX 32
#define TQ_ATTACHMENTS_PER_MESSAGE_MAX  16
#define TQ_CLAIM_QUEUES_MAX             64
#define TQ_OUTBOX_TAKE_MAX              1000
#define TQ_SLA_POLICIES_MAX             64
#define TQ_OUTBOX_ATTEMPTS_DEFAULT_MAX  5
/* SLA targets and reply windows (ms): 10 years. Larger values are INVALID_ARGUMENT: a deadline
 * is computed as a signed 64-bit business-hours duration (calendar.h), and no support contract
 * promises an answer later than this. */
#define TQ_SLA_TARGET_MS_MAX (10ull * 366 * 24 * 3600 * 1000)

/* ---- enums (values are stable: they are stored in the log and sent on the wire) ---------- */

enum tq_channel {
    TQ_CHANNEL_EMAIL = 0,
    TQ_CHANNEL_SMS = 1,
    TQ_CHANNEL_WHATSAPP = 2,
    TQ_CHANNEL_WECHAT = 3,
    TQ_CHANNEL_WEBCHAT = 4,
    TQ_CHANNEL_MESSENGER = 5,
    TQ_CHANNEL_INSTAGRAM = 6,
    TQ_CHANNEL_AMAZON = 7,
    TQ_CHANNEL_EBAY = 8,
    TQ_CHANNEL_PHONE = 9,
    TQ_CHANNEL_API = 10,
};
#define TQ_CHANNEL_COUNT 11

/* Capacity classes: live (chat-like: sms, whatsapp, wechat, webchat, messenger, instagram,
 * phone) and async (email, amazon, ebay, api). */
enum tq_channel_class { TQ_CHANNEL_CLASS_LIVE = 0, TQ_CHANNEL_CLASS_ASYNC = 1 };
#define TQ_CHANNEL_CLASS_COUNT 2

enum tq_ticket_status {
    TQ_STATUS_NEW = 0,
    TQ_STATUS_OPEN = 1,
    TQ_STATUS_PENDING = 2,
    TQ_STATUS_ON_HOLD = 3,
    TQ_STATUS_SOLVED = 4,
    TQ_STATUS_CLOSED = 5,
};
#define TQ_STATUS_COUNT 6

enum tq_priority {
    TQ_PRIORITY_LOW = 0,
    TQ_PRIORITY_NORMAL = 1,
    TQ_PRIORITY_HIGH = 2,
    TQ_PRIORITY_URGENT = 3
};
#define TQ_PRIORITY_COUNT 4

enum tq_direction { TQ_DIRECTION_INBOUND = 0, TQ_DIRECTION_OUTBOUND = 1, TQ_DIRECTION_NOTE = 2 };

enum tq_author_kind { TQ_AUTHOR_CUSTOMER = 0, TQ_AUTHOR_AGENT = 1, TQ_AUTHOR_AUTOMATION = 2 };

/* Only moves forward: QUEUED < SENT < DELIVERED < READ; FAILED is terminal. */
enum tq_delivery {
    TQ_DELIVERY_NONE = 0,
    TQ_DELIVERY_QUEUED = 1,
    TQ_DELIVERY_SENT = 2,
    TQ_DELIVERY_DELIVERED = 3,
    TQ_DELIVERY_READ = 4,
    TQ_DELIVERY_FAILED = 5
};

enum tq_presence { TQ_PRESENCE_OFFLINE = 0, TQ_PRESENCE_AWAY = 1, TQ_PRESENCE_ONLINE = 2 };

enum tq_role {
    TQ_ROLE_SERVER_ADMIN = 0,
    TQ_ROLE_TENANT_ADMIN = 1,
    TQ_ROLE_AGENT = 2,
    TQ_ROLE_INTEGRATION = 3
};

enum tq_sla_metric {
    TQ_SLA_FIRST_REPLY = 0,
    TQ_SLA_NEXT_REPLY = 1,
    TQ_SLA_REQUESTER_WAIT = 2,
    TQ_SLA_AGENT_WORK = 3,
    TQ_SLA_REPLY_WINDOW = 4
};
#define TQ_SLA_METRIC_COUNT 5

enum tq_sla_clock_state {
    TQ_SLA_NONE = 0,
    TQ_SLA_RUNNING = 1,
    TQ_SLA_PAUSED = 2,
    TQ_SLA_ACHIEVED = 3,
    TQ_SLA_BREACHED = 4
};

enum tq_field_type { TQ_FIELD_STRING = 0, TQ_FIELD_INT = 1, TQ_FIELD_BOOL = 2 };

const char *tq_channel_name(enum tq_channel c); /* "email", "whatsapp", ... */
bool tq_channel_parse(const char *name, enum tq_channel *out);
enum tq_channel_class tq_channel_class_of(enum tq_channel c);
const char *tq_status_name(enum tq_ticket_status s); /* "new", "on_hold", ... */
bool tq_status_parse(const char *name, enum tq_ticket_status *out);
const char *tq_priority_name(enum tq_priority p);
bool tq_priority_parse(const char *name, enum tq_priority *out);
const char *tq_delivery_name(enum tq_delivery d);
const char *tq_presence_name(enum tq_presence p);
const char *tq_role_name(enum tq_role r);
const char *tq_sla_metric_name(enum tq_sla_metric m);
/* True if TICKET_UPDATE (or a reply's set_status) may move a ticket from `from` to `to`: the
 * status table of docs/tickets.md. Setting the current status again is a no-op, not a move. */
bool tq_state_status_move_allowed(enum tq_ticket_status from, enum tq_ticket_status to);
/* True if text[0..len) is well-formed UTF-8: the check every command applies to names, subjects
 * and bodies. The server uses it to validate a request that becomes several commands before the
 * first is applied (claim-and-reply). */
bool tq_state_text_valid(const char *text, size_t len);

/* ---- commands ------------------------------------------------------------------------- */

/* A byte string that is not NUL-terminated. In a decoded command it points into the record
 * buffer (or the decode arena); in a command built by the server, into the request. */
struct tq_str {
    const char *ptr;
    uint32_t len;
};

struct tq_attachment {
    struct tq_str key, name, mime_type;
    uint64_t size_bytes;
};

struct tq_custom_field {
    struct tq_str key;
    enum tq_field_type type;
    struct tq_str string_value;
    int64_t int_value; /* also the bool value (0/1) */
};

struct tq_sla_targets {
    /* Target in ms per metric (index enum tq_sla_metric, except REPLY_WINDOW) and priority;
     * 0 = no target for that metric at that priority. */
    uint64_t target_ms[TQ_SLA_METRIC_COUNT - 1][TQ_PRIORITY_COUNT];
};

struct tq_sla_policy {
    struct tq_str name;
    /* Condition: every set criterion must match; none set = matches every ticket. */
    uint64_t queue_id; /* 0 = any */
    int32_t channel;   /* -1 = any, else enum tq_channel */
    struct tq_str tag; /* len 0 = any */
    struct tq_sla_targets targets;
    bool business_hours; /* count only the tenant's business hours */
};

enum tq_cmd_type {
    TQ_CMD_TENANT_CREATE = 1,
    TQ_CMD_TENANT_SETTINGS = 2,    /* auto-close delay, warning fraction, reply windows, ... */
    TQ_CMD_SLA_POLICIES_SET = 3,   /* replaces the ordered list */
    TQ_CMD_BUSINESS_HOURS_SET = 4, /* carries the resolved tz offset table */
    TQ_CMD_TOKEN_ISSUE = 5,
    TQ_CMD_TOKEN_REVOKE = 6,
    TQ_CMD_QUEUE_CREATE = 7,
    TQ_CMD_QUEUE_UPDATE = 8,
    TQ_CMD_AGENT_CREATE = 9,
    TQ_CMD_AGENT_UPDATE = 10, /* presence, capacity, name */
    TQ_CMD_CUSTOMER_CREATE = 11,
    TQ_CMD_CUSTOMER_LINK = 12, /* add a channel identity */
    TQ_CMD_CUSTOMER_MERGE = 13,
    TQ_CMD_MESSAGE_INGEST = 14, /* inbound customer message (idempotent by external id) */
    TQ_CMD_MESSAGE_REPLY = 15,  /* outbound agent/automation reply, or internal note */
    TQ_CMD_TICKET_UPDATE = 16,
    TQ_CMD_TICKET_CLAIM = 17,
    TQ_CMD_TICKET_RELEASE = 18,
    TQ_CMD_TICKET_TRANSFER = 19,
    TQ_CMD_TICKET_MERGE = 20,
    TQ_CMD_OUTBOX_TAKE = 21,
    TQ_CMD_OUTBOX_ACK = 22,     /* gateway ack or later delivery receipt */
    TQ_CMD_CONSUMER_ACK = 23,   /* named durable consumer position */
    TQ_CMD_TICK = 24,           /* SLA warnings/breaches, wake-ups, auto-close, timeouts */
    TQ_CMD_CUSTOMER_ERASE = 25, /* right to erasure: the customer becomes a tombstone */
};
#define TQ_CMD_TYPE_MAX 25

/* Fields of TQ_CMD_TICKET_UPDATE that are set (bit mask). */
enum tq_ticket_update_field {
    TQ_UPDATE_STATUS = 1u << 0,
    TQ_UPDATE_PRIORITY = 1u << 1,
    TQ_UPDATE_QUEUE = 1u << 2,
    TQ_UPDATE_ASSIGNEE = 1u << 3,
    TQ_UPDATE_TAGS_ADD = 1u << 4,
    TQ_UPDATE_TAGS_REMOVE = 1u << 5,
    TQ_UPDATE_SUBJECT = 1u << 6,
    TQ_UPDATE_FIELDS = 1u << 7,
    TQ_UPDATE_WAKE_AT = 1u << 8,
};

struct tq_cmd {
    enum tq_cmd_type type;
    uint64_t now_ms;         /* server commit time: the only clock apply ever sees */
    uint64_t tenant_id;      /* 0 only for TENANT_CREATE and server-level TOKEN_* */
    uint64_t actor_agent_id; /* the agent acting (agent tokens), 0 otherwise */
    union {
        struct {
            struct tq_str name;
        } tenant_create;
        struct {
            uint64_t auto_close_ms;                     /* solved -> closed after this; 0 = never */
            uint32_t sla_warning_permille;              /* warning at this fraction of a target */
            uint64_t reply_window_ms[TQ_CHANNEL_COUNT]; /* 0 = none (whatsapp: 24 h) */
            uint64_t default_queue_id[TQ_CHANNEL_COUNT]; /* ingest routing; 0 = none */
            uint32_t outbox_attempts_max;
        } tenant_settings;
        struct {
            uint32_t count;
            const struct tq_sla_policy *policies;
        } sla_policies_set;
        struct {
            const struct tq_calendar *calendar;
        } business_hours_set;
        struct {
            enum tq_role role;
            uint64_t agent_id;  /* TQ_ROLE_AGENT: who the token acts as */
            uint8_t hash[32];   /* SHA-256 of the secret; the secret is never logged */
            struct tq_str name; /* label for operators */
        } token_issue;
        struct {
            uint64_t token_id;
        } token_revoke;
        struct {
            uint64_t queue_id; /* update only */
            struct tq_str name;
            bool auto_assign;
            uint64_t assignment_timeout_ms; /* 0 = none */
        } queue;
        struct {
            uint64_t agent_id;  /* update only */
            struct tq_str name; /* create; update if len > 0 */
            bool set_presence;
            enum tq_presence presence;
            bool set_capacity;
            uint32_t capacity[TQ_CHANNEL_CLASS_COUNT];
        } agent;
        struct {
            struct tq_str name, language;
            enum tq_channel channel; /* optional first identity (external_id len > 0) */
            struct tq_str external_id;
        } customer_create;
        struct {
            uint64_t customer_id;
            enum tq_channel channel;
            struct tq_str external_id;
        } customer_link;
        struct {
            uint64_t survivor_id, merged_id;
        } customer_merge;
        /* Right to erasure. The customer keeps its id (tickets and messages still point to it)
         * but loses its name, language and every channel identity (removed from the lookup
         * table, bytes overwritten): a later message from the same sender creates a NEW
         * customer. The subjects of its tickets are cleared too (customer-written text). The
         * record carries only the id. Message bodies stay in the log: the compactor redacts
         * them (docs/operations.md). Erasing twice is FAILED_PRECONDITION; an erased customer
         * takes no more links or merges (FAILED_PRECONDITION). */
        struct {
            uint64_t customer_id;
        } customer_erase;
        struct {
            enum tq_channel channel;
            struct tq_str from_external_id; /* the sender's identity on channel */
            struct tq_str customer_name;    /* for a first contact */
            struct tq_str language;
            struct tq_str message_external_id; /* idempotency key; len 0 = none */
            uint64_t provider_ts_ms;
            uint64_t queue_id;         /* 0 = tenant default for channel */
            enum tq_priority priority; /* for a new ticket */
            struct tq_str subject;
            struct tq_str body;
            uint32_t attachment_count;
            const struct tq_attachment *attachments;
            uint32_t tag_count;
            const struct tq_str *tags; /* for a new ticket */
        } ingest;
        struct {
            uint64_t ticket_id;
            bool internal_note;
            bool automated;          /* author is automation, not the actor agent */
            enum tq_channel channel; /* reply channel; normally the ticket's origin */
            bool set_status;
            enum tq_ticket_status status; /* e.g. reply-and-set-pending */
            struct tq_str body;
            uint32_t attachment_count;
            const struct tq_attachment *attachments;
        } reply;
        struct {
            uint64_t ticket_id;
            uint32_t fields; /* enum tq_ticket_update_field mask */
            enum tq_ticket_status status;
            enum tq_priority priority;
            uint64_t queue_id;
            uint64_t assignee_id; /* 0 = unassign */
            uint32_t tags_add_count, tags_remove_count;
            const struct tq_str *tags_add, *tags_remove;
            struct tq_str subject;
            uint32_t field_count;
            const struct tq_custom_field *custom_fields;
            uint64_t wake_at_ms; /* 0 = clear */
        } ticket_update;
        struct {
            uint64_t agent_id;
            uint32_t queue_count;
            const uint64_t *queue_ids; /* 0 queues = all the tenant's queues */
        } claim;
        struct {
            uint64_t ticket_id;
        } release;
        struct {
            uint64_t ticket_id, to_queue_id, to_agent_id;
        } transfer;
        struct {
            uint64_t source_id, target_id;
        } ticket_merge;
        struct {
            enum tq_channel channel;
            uint32_t max;
            uint64_t lease_ms;
        } outbox_take;
        struct {
            uint64_t message_id;
            enum tq_delivery status; /* SENT, DELIVERED, READ or FAILED */
            struct tq_str reason;    /* FAILED: provider's reason */
            struct tq_str provider_message_id;
            uint64_t provider_ts_ms;
            bool retry; /* FAILED but retryable: back to the queue */
        } outbox_ack;
        struct {
            struct tq_str name;
            uint64_t lsn;
        } consumer_ack;
        struct {
            uint8_t unused;
        } tick;
    } u;
};

/* What a successful apply produced (ids of created or touched entities). */
struct tq_cmd_result {
    uint64_t tenant_id, token_id, queue_id, agent_id, customer_id, ticket_id, message_id;
    uint64_t ticket_number; /* per-tenant display number of ticket_id */
    bool customer_created, ticket_created;
    bool duplicate;            /* idempotent ingest: original ids, nothing changed */
    bool over_capacity;        /* a manual assignment exceeded the agent's capacity */
    uint32_t taken_count;      /* OUTBOX_TAKE: message ids in taken_ids */
    const uint64_t *taken_ids; /* valid until the next apply */
};

/* Encodes cmd into buf (cap bytes). Returns the byte count, or 0 if cap is too small
 * (tq_cmd_encoded_size tells the exact size). The encoding is the log record payload. */
size_t tq_cmd_encoded_size(const struct tq_cmd *cmd);
size_t tq_cmd_encode(const struct tq_cmd *cmd, uint8_t *buf, size_t cap);
/* Decodes a record payload. Strings point into buf (which must outlive cmd); arrays are
 * allocated from arena. TQ_ERR_CORRUPT for malformed bytes (never asserts on them). */
TQ_NODISCARD enum tq_err tq_cmd_decode(const uint8_t *buf, size_t len, struct tq_cmd *cmd,
                                       struct tq_arena *arena, struct tq_error *error);
/* The log record type used for commands (the log's opaque type field). */
#define TQ_RECORD_TYPE_CMD 1

/* ---- events --------------------------------------------------------------------------- */

enum tq_event_type {
    TQ_EVENT_TENANT_CREATED = 1,
    TQ_EVENT_TICKET_CREATED = 2,
    TQ_EVENT_TICKET_UPDATED = 3, /* field + old -> new */
    TQ_EVENT_MESSAGE_ADDED = 4,
    TQ_EVENT_ASSIGNED = 5, /* old -> new assignee (0 = none) */
    TQ_EVENT_SLA_WARNING = 6,
    TQ_EVENT_SLA_BREACH = 7,
    TQ_EVENT_SLA_ACHIEVED = 8,
    TQ_EVENT_DELIVERY_STATUS = 9, /* old -> new delivery status */
    TQ_EVENT_CUSTOMER_CREATED = 10,
    TQ_EVENT_CUSTOMER_MERGED = 11,
    TQ_EVENT_TICKET_MERGED = 12,
    TQ_EVENT_OUTBOX_FAILED = 13,   /* attempts exhausted */
    TQ_EVENT_CONFIG_CHANGED = 14,  /* tenant settings, policies, hours, queues, agents, tokens */
    TQ_EVENT_CUSTOMER_ERASED = 15, /* customer_id became a tombstone (CUSTOMER_ERASE) */
};

enum tq_event_field {
    TQ_FIELD_NONE = 0,
    TQ_FIELD_STATUS = 1,
    TQ_FIELD_PRIORITY = 2,
    TQ_FIELD_QUEUE = 3,
    TQ_FIELD_ASSIGNEE = 4,
    TQ_FIELD_TAGS = 5,
    TQ_FIELD_SUBJECT = 6,
    TQ_FIELD_CUSTOM = 7,
    TQ_FIELD_WAKE_AT = 8,
    TQ_FIELD_CUSTOMER = 9,
};

struct tq_event {
    enum tq_event_type type;
    uint64_t lsn;   /* of the record that caused it */
    uint64_t at_ms; /* when it happened (SLA events: the exact deadline) */
    uint64_t tenant_id, ticket_id, message_id, customer_id, agent_id, queue_id;
    enum tq_event_field field;
    int64_t old_value, new_value;  /* enum values or ids, per field */
    enum tq_sla_metric sla_metric; /* SLA events */
};

struct tq_event_sink {
    void (*emit)(void *ctx, const struct tq_event *event);
    void *ctx;
};

const char *tq_event_type_name(enum tq_event_type t);

/* ---- state ---------------------------------------------------------------------------- */

struct tq_state;

/* Optional hook: apply calls it (on the applying thread) with a 2 MiB-aligned range of the
 * state's memory that holds no data yet and that apply will soon write: the next huge page of a
 * growing slab, the next huge page of an array that grows in place (the deadline heap), or the
 * whole of the table a hash table will grow into. The server populates it
 * on another thread (madvise MADV_POPULATE_WRITE), so the kernel's zeroing of fresh huge pages
 * (milliseconds each in a VM) is not done inside apply. It must not block and may ignore the
 * request; populating writes nothing (the pages read as zeroes either way), so apply's results
 * do not depend on it. The range may be unmapped by a later apply (a table that regrew) or by
 * tq_state_free: the populating side must tolerate ENOMEM, and stop before tq_state_free. */
typedef void tq_state_prefault_fn(void *ctx, void *addr, size_t len);

/* Optional hook: apply calls it (on the applying thread) with a 2 MiB-aligned mapping of the
 * state's that it no longer uses (the old table once an incremental table growth has copied
 * it: 46 MB at 10 million messages, whose munmap took ~0.3 ms inside one apply), to be
 * unmapped later on another thread. The state never reads, writes or counts the range again
 * (tq_state_bytes_mapped no longer includes it), so apply's results do not depend on when it
 * goes. The hook must munmap it exactly once, and may do so at once (a full queue); ranges
 * still pending when tq_state_free runs are the hook's to unmap. NULL: apply unmaps it. */
typedef void tq_state_release_fn(void *ctx, void *addr, size_t len);

struct tq_state_options {
    uint32_t body_bytes_max;        /* 0 = TQ_BODY_BYTES_DEFAULT_MAX */
    tq_state_prefault_fn *prefault; /* NULL: none (tools) */
    void *prefault_ctx;
    tq_state_release_fn *release; /* NULL: apply unmaps (tools) */
    void *release_ctx;
};

struct tq_state *tq_state_new(const struct tq_state_options *options);

/* Sizing hint, no change to the state's content: makes the message idempotency table big
 * enough for `more` further messages with an external id, so it need not grow (copying every
 * key, a random write each, spread over the inserts after each growth) on the way. A recovery
 * calls it with the number of records it is about to replay (an upper bound). Costs 5.3 bytes
 * per reserved message (capped at the 268 million messages a state holds); a table found too
 * small later still grows as usual. It re-creates the table in one go (a copy in progress is
 * finished first), so call it between applies where a long call does no harm, not per record. */
void tq_state_reserve_messages(struct tq_state *state, uint64_t more);

void tq_state_free(struct tq_state *state);

/* The state's memory, for a forked snapshot child that breaks copy-on-write ahead of the
 * parent (server/snapshot.c): fn is called once per region [addr, addr + len) that holds state
 * data (a slab chunk or huge-page group, a hash table, a heap). hot: apply writes it at random
 * places (heaps, the ticket, customer and small entity slabs, hash tables) or will write it
 * next (the group an append-only slab is filling); cold: apply does not write it again (the
 * full part of the message, identity and intern slabs). Every hot region comes before every
 * cold one, and among the hot ones those apply writes the densest come first (the heaps, whose
 * every page an ingest burst touches, then the slabs, then the tables). A region may include
 * pages that were never touched (the unused end of a group or table) and may be shared with
 * unrelated heap data when it came from tq_alloc: a caller that writes must only do what
 * leaves the bytes unchanged (MADV_POPULATE_WRITE). Read-only; no allocation. */
typedef void tq_state_region_fn(void *ctx, void *addr, size_t len, bool hot);
void tq_state_regions(const struct tq_state *state, tq_state_region_fn *fn, void *ctx);

/* Applies one command carried by the record at lsn (lsns strictly increase across calls).
 * On error nothing changed and no event was emitted. events may be NULL; result may be NULL.
 * Errors: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS,
 * RESOURCE_EXHAUSTED, PERMISSION_DENIED (an agent acting for another agent). */
TQ_NODISCARD enum tq_err tq_state_apply(struct tq_state *state, uint64_t lsn,
                                        const struct tq_cmd *cmd, struct tq_cmd_result *result,
                                        const struct tq_event_sink *events, struct tq_error *error);

/* Optional, pure: warms the cache lines apply will need for cmd. An inbound message needs a
 * chain of dependent loads (table slot -> identity -> customer -> ticket -> its heap entries
 * and their neighbours), so the hint comes in TQ_STATE_PREFETCH_STAGES stages: a replay or
 * recovery loop that decodes ahead calls stage k for the record
 * (TQ_STATE_PREFETCH_STAGES - k) * TQ_STATE_PREFETCH_GAP records ahead of the one it applies
 * (stage 0 for the record 15 ahead, then 1, 2, 3 and 4 for the records 12, 9, 6 and 3 ahead),
 * passing the same hint (filled by stage 0, one per record in flight); each stage reads only
 * what the previous ones fetched (for an inbound message, stages 1-4 walk the chain one link
 * each, probing past a displaced identity). It changes nothing in the state, so calling it or not
 * (or with a stale hint) never changes a result. */
#define TQ_STATE_PREFETCH_STAGES 5u
#define TQ_STATE_PREFETCH_GAP    3u /* records between two stages of one record */
#define TQ_STATE_PREFETCH_AHEAD  (TQ_STATE_PREFETCH_STAGES * TQ_STATE_PREFETCH_GAP)
struct tq_state_prefetch_hint {
    uint64_t msg_hash, ident_hash; /* keys of an inbound message (0 = none) */
    uint32_t ident;                /* candidate identity of the sender (0 = none) */
    uint32_t ticket;               /* the ticket found so far (0 = none) */
    uint32_t probe;                /* identity table slot of ident */
    uint8_t step;                  /* how far the walk got (state.c) */
    uint8_t ident_norm_len;        /* > 0: ident_norm holds the sender's normalised id */
    char ident_norm[40];           /* an e-mail sender's lower-cased id (apply reuses it) */
};
void tq_state_prefetch(const struct tq_state *state, const struct tq_cmd *cmd, unsigned stage,
                       struct tq_state_prefetch_hint *hint);

/* tq_state_apply for a cmd that went through tq_state_prefetch: apply reuses the key hashes
 * stage 0 computed instead of hashing the external ids again. hint must be the one stage 0
 * filled for this very cmd (debug builds recompute and assert); NULL = tq_state_apply.
 * Same results, events and errors as tq_state_apply. */
TQ_NODISCARD enum tq_err
tq_state_apply_hinted(struct tq_state *state, uint64_t lsn, const struct tq_cmd *cmd,
                      const struct tq_state_prefetch_hint *hint, struct tq_cmd_result *result,
                      const struct tq_event_sink *events, struct tq_error *error);

/* ---- decode-ahead apply window (recovery, replay, benchmarks) --------------------------- */

/* Applying a log record by record leaves the CPU waiting on memory: an inbound message costs
 * 6-8 dependent cache misses (idempotency slot, identity slot, identity, customer, ticket,
 * heap entries). A window decodes up to TQ_STATE_WINDOW_RECORDS records ahead of the one it
 * applies and runs tq_state_prefetch's stages on them, so those misses overlap and reach the
 * cache before apply needs them. Each record's bytes are copied into the window (the caller's
 * buffer may be reused at once). Applying through a window gives exactly the results, events
 * and errors of calling tq_state_apply on the same records in order. Use:
 *
 *     while (more records or !tq_state_window_empty(w)) {
 *         while (more records && !tq_state_window_full(w)) tq_state_window_push(w, s, ...);
 *         tq_state_window_apply(w, s, ...);
 *     }
 */
#define TQ_STATE_WINDOW_RECORDS (TQ_STATE_PREFETCH_AHEAD + 1u)
struct tq_state_window_slot {
    struct tq_arena arena; /* the record's bytes and its decoded arrays */
    struct tq_cmd cmd;
    struct tq_state_prefetch_hint hint;
    uint64_t lsn;
};
struct tq_state_window {
    struct tq_state_window_slot slots[TQ_STATE_WINDOW_RECORDS];
    uint64_t pushed, applied; /* records pushed and applied so far */
};
void tq_state_window_init(struct tq_state_window *window);
void tq_state_window_destroy(struct tq_state_window *window);
bool tq_state_window_full(const struct tq_state_window *window);  /* push needs an apply first */
bool tq_state_window_empty(const struct tq_state_window *window); /* nothing to apply */
/* Copies and decodes the record (payload, len) that has LSN lsn, appends it to the window and
 * advances the prefetch stages of the records before it. Requires !full; lsns must increase.
 * Errors: CORRUPT (tq_cmd_decode refused the bytes); then nothing was appended. */
TQ_NODISCARD enum tq_err tq_state_window_push(struct tq_state_window *window,
                                              const struct tq_state *state, uint64_t lsn,
                                              const void *payload, size_t len,
                                              struct tq_error *error);
/* Applies the oldest record of the window (requires !empty): tq_state_apply_hinted with its
 * LSN and hint. The record leaves the window whatever the result. lsn_out and cmd_out (either
 * may be NULL) receive its LSN and decoded command, valid until the next push. */
TQ_NODISCARD enum tq_err tq_state_window_apply(struct tq_state_window *window,
                                               struct tq_state *state, struct tq_cmd_result *result,
                                               const struct tq_event_sink *events,
                                               uint64_t *lsn_out, const struct tq_cmd **cmd_out,
                                               struct tq_error *error);

/* Last applied LSN. */
uint64_t tq_state_lsn(const struct tq_state *state);

/* Earliest time a TICK would change something (SLA warning/breach, wake_at, auto-close,
 * assignment timeout), or UINT64_MAX. The server writes a TICK at min(now + 1 s, this). */
uint64_t tq_state_next_deadline_ms(const struct tq_state *state);

/* A canonical digest of the whole state (XXH3-128 over a canonical serialisation): equal
 * states, however reached, have equal digests. The last applied LSN is not part of it, so a
 * command that changes nothing (a duplicate ingest) leaves the digest unchanged. */
void tq_state_digest(const struct tq_state *state, uint8_t digest_out[16]);

/* Snapshot: serialise the whole state (blob allocated with tq_alloc; caller frees with
 * tq_free(blob, len)) and load it into a fresh state. TQ_ERR_CORRUPT for a bad blob. */
TQ_NODISCARD enum tq_err tq_state_serialize(const struct tq_state *state, void **blob_out,
                                            size_t *len_out, struct tq_error *error);
/* The same blob as tq_state_serialize, laid out for a file write with less copying (the
 * background snapshot uses it): the blob starts head_bytes into a page-aligned anonymous
 * mapping whose first head_bytes are zeros left for the caller's file header, and the bytes
 * from head_bytes + blob_bytes to map_bytes are the caller's to use (zero padding). Nothing is
 * copied after serialising, and the body is hashed as it is written. The caller frees the
 * image with tq_state_image_free. TQ_ERR_RESOURCE_EXHAUSTED when memory runs out. */
struct tq_state_image {
    uint8_t *map;      /* page-aligned */
    size_t map_bytes;  /* >= head_bytes + blob_bytes, a whole number of pages */
    size_t head_bytes; /* as asked */
    size_t blob_bytes; /* the blob is map[head_bytes .. head_bytes + blob_bytes) */
};
TQ_NODISCARD enum tq_err tq_state_serialize_image(const struct tq_state *state, size_t head_bytes,
                                                  struct tq_state_image *image_out,
                                                  struct tq_error *error);
void tq_state_image_free(struct tq_state_image *image);
TQ_NODISCARD enum tq_err tq_state_deserialize(const void *blob, size_t len,
                                              const struct tq_state_options *options,
                                              struct tq_state **state_out, struct tq_error *error);

/* ---- queries (views valid until the next apply) ---------------------------------------- */

struct tq_token_view {
    uint64_t token_id, tenant_id, agent_id;
    enum tq_role role;
    bool revoked;
};
/* Looks a token up by the SHA-256 of its secret. The hash-table probe uses the first 8 bytes;
 * the final comparison of each candidate covers all 32 bytes in constant time (XORs OR-ed over
 * every byte, no early exit), so the time taken does not tell how many leading bytes of a
 * guessed hash matched. NOT_FOUND for unknown, FAILED_PRECONDITION revoked. */
TQ_NODISCARD enum tq_err tq_state_token_find(const struct tq_state *state, const uint8_t hash[32],
                                             struct tq_token_view *out);
bool tq_state_token_get(const struct tq_state *state, uint64_t token_id, struct tq_token_view *out);

struct tq_tenant_view {
    uint64_t tenant_id;
    struct tq_str name;
    uint64_t auto_close_ms;
    uint32_t sla_warning_permille;
    uint64_t ticket_count, message_count, customer_count;
};
bool tq_state_tenant_get(const struct tq_state *state, uint64_t tenant_id,
                         struct tq_tenant_view *out);

struct tq_message_view {
    uint64_t message_id, ticket_id;
    uint64_t lsn; /* record carrying the body: tq_log_read + tq_cmd_decode */
    enum tq_direction direction;
    enum tq_channel channel;
    enum tq_author_kind author_kind;
    uint64_t author_id; /* customer or agent id; 0 for automation */
    uint64_t created_ms, provider_ts_ms;
    enum tq_delivery delivery;
    uint32_t attempts;
};

struct tq_sla_view {
    enum tq_sla_metric metric;
    enum tq_sla_clock_state state;
    uint64_t deadline_ms; /* RUNNING: when it breaches */
    uint64_t target_ms;
    uint64_t elapsed_ms; /* business/calendar ms counted so far (at the last change) */
    bool warned;
};

struct tq_ticket_view {
    uint64_t ticket_id, tenant_id, number, customer_id, queue_id, assignee_id;
    uint64_t merged_into_id;  /* tombstone: non-zero if merged away */
    uint64_t follow_up_of_id; /* created as a follow-up of a closed ticket */
    enum tq_ticket_status status;
    enum tq_priority priority;
    enum tq_channel origin_channel;
    struct tq_str subject;
    uint64_t created_ms, updated_ms, first_response_ms, solved_ms, wake_at_ms;
    uint32_t message_count;
    uint32_t tag_count;
    const struct tq_str *tags;
    uint32_t field_count;
    const struct tq_custom_field *custom_fields;
    uint32_t sla_count;
    struct tq_sla_view sla[TQ_SLA_METRIC_COUNT];
};
TQ_NODISCARD enum tq_err tq_state_ticket_get(const struct tq_state *state, uint64_t tenant_id,
                                             uint64_t ticket_id, struct tq_ticket_view *out);
/* Messages of a ticket in order, from index first; fills up to cap views, returns the count.
 * Costs O(message_count - first): the chain runs newest first (an append touches no older
 * message), so the newest page (what a desk shows; the server's `last`) is the cheapest. */
uint32_t tq_state_ticket_messages(const struct tq_state *state, uint64_t tenant_id,
                                  uint64_t ticket_id, uint32_t first, uint32_t cap,
                                  struct tq_message_view *out);
TQ_NODISCARD enum tq_err tq_state_message_get(const struct tq_state *state, uint64_t tenant_id,
                                              uint64_t message_id, struct tq_message_view *out);
/* The state keeps 24 bytes per message; a view therefore has created_ms = provider_ts_ms = 0,
 * and author_id = 0 for agent-authored messages (inbound ones get the ticket's customer). The
 * record at view->lsn has the rest: decode it (tq_cmd_decode) and call this to fill created_ms
 * (the record's now_ms), provider_ts_ms (ingest) and author_id (the acting agent of a reply).
 * Pure; does nothing if record is not the MESSAGE_INGEST/MESSAGE_REPLY that carried view. */
void tq_state_message_complete(struct tq_message_view *view, const struct tq_cmd *record);

struct tq_customer_view {
    uint64_t customer_id, tenant_id, merged_into_id;
    bool erased; /* tombstone of CUSTOMER_ERASE: name, language empty */
    struct tq_str name, language;
    uint32_t identity_count;
    uint32_t open_ticket_count;
};
TQ_NODISCARD enum tq_err tq_state_customer_get(const struct tq_state *state, uint64_t tenant_id,
                                               uint64_t customer_id, struct tq_customer_view *out);
/* Identity lookup, O(1); email identities are matched case-insensitively. Follows merges. */
TQ_NODISCARD enum tq_err tq_state_customer_find(const struct tq_state *state, uint64_t tenant_id,
                                                enum tq_channel channel, struct tq_str external_id,
                                                struct tq_customer_view *out);
/* Identity i (0-based) of a customer. */
bool tq_state_customer_identity(const struct tq_state *state, uint64_t tenant_id,
                                uint64_t customer_id, uint32_t index, enum tq_channel *channel,
                                struct tq_str *external_id);

struct tq_queue_view {
    uint64_t queue_id, tenant_id;
    struct tq_str name;
    bool auto_assign;
    uint64_t assignment_timeout_ms;
    uint32_t depth;
    uint64_t oldest_enqueued_ms; /* 0 if empty */
};
TQ_NODISCARD enum tq_err tq_state_queue_get(const struct tq_state *state, uint64_t tenant_id,
                                            uint64_t queue_id, struct tq_queue_view *out);
/* The tenant's queues in id order (up to cap ids); returns the total count. */
uint32_t tq_state_queue_ids(const struct tq_state *state, uint64_t tenant_id, uint64_t *out,
                            uint32_t cap);
/* The first up-to-cap ticket ids of a queue in queue order (priority, SLA due, entered, id). */
uint32_t tq_state_queue_list(const struct tq_state *state, uint64_t tenant_id, uint64_t queue_id,
                             uint64_t *ticket_ids_out, uint32_t cap);

struct tq_agent_view {
    uint64_t agent_id, tenant_id;
    struct tq_str name;
    enum tq_presence presence;
    uint32_t capacity[TQ_CHANNEL_CLASS_COUNT];
    uint32_t load[TQ_CHANNEL_CLASS_COUNT];
    uint64_t last_assigned_ms;
};
TQ_NODISCARD enum tq_err tq_state_agent_get(const struct tq_state *state, uint64_t tenant_id,
                                            uint64_t agent_id, struct tq_agent_view *out);
uint32_t tq_state_agent_ids(const struct tq_state *state, uint64_t tenant_id, uint64_t *out,
                            uint32_t cap);

/* Running SLA clocks of the tenant nearest their deadline, earliest first. */
struct tq_sla_due {
    uint64_t ticket_id;
    enum tq_sla_metric metric;
    uint64_t deadline_ms;
};
uint32_t tq_state_sla_nearest(const struct tq_state *state, uint64_t tenant_id,
                              struct tq_sla_due *out, uint32_t cap);

/* Named durable consumer position (0 if unknown). */
uint64_t tq_state_consumer_lsn(const struct tq_state *state, uint64_t tenant_id,
                               struct tq_str name);

struct tq_stats {
    uint64_t tenant_count;
    uint64_t tickets_by_status[TQ_STATUS_COUNT];
    uint64_t ticket_count, message_count, customer_count, agent_count, queue_count;
    uint64_t queued_tickets; /* in all queues */
    uint64_t sla_breaches, sla_warnings;
    uint64_t outbox_pending;
    uint64_t messages_by_channel[TQ_CHANNEL_COUNT];
    /* First-response and resolution time distributions (ms), from the tenant's history. */
    uint64_t first_response_p50_ms, first_response_p90_ms;
    uint64_t resolution_p50_ms, resolution_p90_ms;
    uint64_t lsn;
};
/* Stats for one tenant, or for all tenants if tenant_id == 0. */
/* Bytes all states hold in huge-page regions (big slabs and tables, mapped outside tq_alloc);
 * tq_alloc_bytes_live() + this is what the states asked for in all. */
uint64_t tq_state_bytes_mapped(void);

void tq_state_stats(const struct tq_state *state, uint64_t tenant_id, struct tq_stats *out);

/* Messages per channel for one tenant in the hour starting at hour_start_ms (UTC, aligned). */
void tq_state_hourly_messages(const struct tq_state *state, uint64_t tenant_id,
                              uint64_t hour_start_ms, uint64_t out[TQ_CHANNEL_COUNT]);

/* Debug/test: checks every cross-structure invariant (queue membership, agent load, deadline
 * index, tenant isolation). O(n). Returns false and fills error on the first violation. */
bool tq_state_check_invariants(const struct tq_state *state, struct tq_error *error);

#endif
