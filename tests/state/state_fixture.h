/* tests/state/state_fixture.h: a small harness around tq_state for the state tests.
 *
 * Every command a test applies goes through the record codec first (encode, decode, apply the
 * decoded copy), so every rule test is also a codec round-trip test. Events are recorded in a
 * growable array. fx_fail() checks the "validate, then mutate" promise on every error path:
 * the digest is unchanged, no event was emitted and the LSN did not move.
 */
#ifndef TQ_STATE_FIXTURE_H
#define TQ_STATE_FIXTURE_H

#include "state.h"
#include "tq_alloc.h"
#include "tq_test.h"

#include <string.h>

struct fx {
    struct tq_state *s;
    uint64_t lsn;
    uint64_t now;
    struct tq_event *ev;
    uint32_t ev_n, ev_cap;
    struct tq_arena arena;
    struct tq_error err;
    struct tq_cmd_result res;
    uint8_t *buf;
    size_t buf_cap;
};

static void fx_emit(void *ctx, const struct tq_event *e) {
    struct fx *f = ctx;
    if (f->ev_n == f->ev_cap) {
        uint32_t cap = f->ev_cap == 0 ? 64 : f->ev_cap * 2;
        f->ev = realloc(f->ev, cap * sizeof(*f->ev));
        TQ_CHECK(f->ev != NULL);
        f->ev_cap = cap;
    }
    f->ev[f->ev_n++] = *e;
}

static inline void fx_init(struct fx *f) {
    memset(f, 0, sizeof(*f));
    f->s = tq_state_new(NULL);
    f->now = 1700000000000ull; /* 2023-11-14T22:13:20Z, a Tuesday */
    tq_arena_init(&f->arena, 1 << 16);
    f->buf_cap = 1 << 20;
    f->buf = malloc(f->buf_cap);
    TQ_CHECK(f->buf != NULL);
}

static inline void fx_free(struct fx *f) {
    tq_state_free(f->s);
    tq_arena_destroy(&f->arena);
    free(f->ev);
    free(f->buf);
}

/* Encodes, decodes and applies cmd (now_ms defaults to f->now). Returns the apply result code.
 * On error checks that nothing changed and nothing was emitted. */
static inline enum tq_err fx_try(struct fx *f, struct tq_cmd *cmd) {
    if (cmd->now_ms == 0) cmd->now_ms = f->now;
    size_t n = tq_cmd_encode(cmd, f->buf, f->buf_cap);
    TQ_CHECK(n > 0);
    TQ_CHECK_UEQ(n, tq_cmd_encoded_size(cmd));
    struct tq_cmd dec;
    tq_arena_reset(&f->arena);
    bool decoded = tq_cmd_decode(f->buf, n, &dec, &f->arena, &f->err) == TQ_OK;
    if (decoded) {
        /* re-encoding the decoded command gives the same bytes */
        static uint8_t again[1 << 20];
        size_t n2 = tq_cmd_encode(&dec, again, sizeof(again));
        TQ_CHECK_UEQ(n2, n);
        TQ_CHECK_MEM_EQ(again, f->buf, n);
    } else {
        /* The decoder refuses only what apply refuses too (limits it checks as well): apply
         * the original command and expect an error below. */
        dec = *cmd;
    }
    uint8_t before[16], after[16];
    tq_state_digest(f->s, before);
    struct tq_state_prefetch_hint hint;
    for (unsigned st = 0; st < 4; st++)
        tq_state_prefetch(f->s, &dec, st, &hint); /* pure */
    tq_state_digest(f->s, after);
    TQ_CHECK_MEM_EQ(before, after, 16);
    uint32_t ev_before = f->ev_n;
    struct tq_event_sink sink = {fx_emit, f};
    enum tq_err e = tq_state_apply(f->s, f->lsn + 1, &dec, &f->res, &sink, &f->err);
    if (!decoded) TQ_CHECK(e != TQ_OK);
    if (e == TQ_OK) {
        f->lsn++;
    } else {
        tq_state_digest(f->s, after);
        TQ_CHECK_MEM_EQ(before, after, 16);
        TQ_CHECK_EQ(f->ev_n, ev_before);
        TQ_CHECK_UEQ(tq_state_lsn(f->s), f->lsn);
    }
    struct tq_error ie;
    if (!tq_state_check_invariants(f->s, &ie)) {
        fprintf(stderr, "invariant violated after cmd type %d: %s\n", (int)cmd->type, ie.msg);
        TQ_CHECK(false);
    }
    return e;
}

#define FX_OK(f, cmd)        TQ_CHECK_OK(fx_try((f), (cmd)), &(f)->err)
#define FX_ERR(f, cmd, code) TQ_CHECK_ERR(fx_try((f), (cmd)), code, &(f)->err)

static inline struct tq_str S(const char *s) {
    return (struct tq_str){s, (uint32_t)strlen(s)};
}

static inline struct tq_cmd
fx_cmd(enum tq_cmd_type type, uint64_t tenant) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = type;
    c.tenant_id = tenant;
    return c;
}

static inline uint64_t fx_tenant(struct fx *f, const char *name) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TENANT_CREATE, 0);
    c.u.tenant_create.name = S(name);
    FX_OK(f, &c);
    return f->res.tenant_id;
}

/* Tenant settings with explicit values (defaults: auto-close off, warnings at 75%, no windows). */
static inline void fx_settings(struct fx *f, uint64_t tenant, uint64_t auto_close_ms,
                               uint32_t permille, uint64_t whatsapp_window_ms, uint32_t attempts) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TENANT_SETTINGS, tenant);
    c.u.tenant_settings.auto_close_ms = auto_close_ms;
    c.u.tenant_settings.sla_warning_permille = permille;
    c.u.tenant_settings.reply_window_ms[TQ_CHANNEL_WHATSAPP] = whatsapp_window_ms;
    c.u.tenant_settings.outbox_attempts_max = attempts;
    FX_OK(f, &c);
}

static inline uint64_t fx_queue(struct fx *f, uint64_t tenant, const char *name, bool auto_assign,
                                uint64_t timeout_ms) {
    struct tq_cmd c = fx_cmd(TQ_CMD_QUEUE_CREATE, tenant);
    c.u.queue.name = S(name);
    c.u.queue.auto_assign = auto_assign;
    c.u.queue.assignment_timeout_ms = timeout_ms;
    FX_OK(f, &c);
    return f->res.queue_id;
}

static inline uint64_t fx_agent(struct fx *f, uint64_t tenant, const char *name,
                                enum tq_presence presence, uint32_t live_cap, uint32_t async_cap) {
    struct tq_cmd c = fx_cmd(TQ_CMD_AGENT_CREATE, tenant);
    c.u.agent.name = S(name);
    c.u.agent.set_presence = true;
    c.u.agent.presence = presence;
    c.u.agent.set_capacity = true;
    c.u.agent.capacity[TQ_CHANNEL_CLASS_LIVE] = live_cap;
    c.u.agent.capacity[TQ_CHANNEL_CLASS_ASYNC] = async_cap;
    FX_OK(f, &c);
    return f->res.agent_id;
}

/* An inbound message command (from and msg_id must outlive it). */
static inline struct tq_cmd fx_ingest_cmd(uint64_t tenant, enum tq_channel ch, const char *from,
                                          const char *msg_id, uint64_t queue) {
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_INGEST, tenant);
    c.u.ingest.channel = ch;
    c.u.ingest.from_external_id = S(from);
    c.u.ingest.message_external_id = S(msg_id != NULL ? msg_id : "");
    c.u.ingest.queue_id = queue;
    c.u.ingest.priority = TQ_PRIORITY_NORMAL;
    c.u.ingest.subject = S("help");
    c.u.ingest.body = S("hello, my order is late");
    return c;
}

/* Inbound message; returns the ticket id (result in f->res). */
static inline uint64_t fx_ingest(struct fx *f, uint64_t tenant, enum tq_channel ch,
                                 const char *from, const char *msg_id, uint64_t queue) {
    struct tq_cmd c = fx_ingest_cmd(tenant, ch, from, msg_id, queue);
    FX_OK(f, &c);
    return f->res.ticket_id;
}

static inline uint64_t fx_reply(struct fx *f, uint64_t tenant, uint64_t agent, uint64_t ticket) {
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_REPLY, tenant);
    c.actor_agent_id = agent;
    c.u.reply.ticket_id = ticket;
    c.u.reply.channel = TQ_CHANNEL_EMAIL;
    c.u.reply.body = S("we are on it");
    FX_OK(f, &c);
    return f->res.message_id;
}

static inline void fx_status(struct fx *f, uint64_t tenant, uint64_t ticket,
                             enum tq_ticket_status st) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, tenant);
    c.u.ticket_update.ticket_id = ticket;
    c.u.ticket_update.fields = TQ_UPDATE_STATUS;
    c.u.ticket_update.status = st;
    FX_OK(f, &c);
}

static inline void fx_tick(struct fx *f, uint64_t now) {
    f->now = now;
    struct tq_cmd c = fx_cmd(TQ_CMD_TICK, 0);
    FX_OK(f, &c);
}

static inline struct tq_ticket_view fx_ticket(struct fx *f, uint64_t tenant, uint64_t ticket) {
    struct tq_ticket_view v;
    TQ_CHECK_OK(tq_state_ticket_get(f->s, tenant, ticket, &v), NULL);
    return v;
}

/* Number of events of a type (and, if metric >= 0, of that SLA metric) since index from. */
static inline uint32_t fx_count(const struct fx *f, uint32_t from, enum tq_event_type type,
                                int metric) {
    uint32_t n = 0;
    for (uint32_t i = from; i < f->ev_n; i++) {
        if (f->ev[i].type == type && (metric < 0 || (int)f->ev[i].sla_metric == metric)) n++;
    }
    return n;
}

/* The last event of a type (and metric if >= 0) since from; fails the test if none. */
static inline const struct tq_event *fx_last(const struct fx *f, uint32_t from,
                                             enum tq_event_type type, int metric) {
    for (uint32_t i = f->ev_n; i > from; i--) {
        const struct tq_event *e = &f->ev[i - 1];
        if (e->type == type && (metric < 0 || (int)e->sla_metric == metric)) return e;
    }
    fprintf(stderr, "no event of type %s since %u\n", tq_event_type_name(type), from);
    TQ_CHECK(false);
    return NULL;
}

/* SLA policy helper: one policy matching everything with the given targets at every priority
 * (ms; 0 = none) for first reply, next reply, requester wait, agent work. */
static inline void fx_policy(struct fx *f, uint64_t tenant, uint64_t first, uint64_t next,
                             uint64_t wait, uint64_t work, bool business_hours) {
    struct tq_sla_policy p;
    memset(&p, 0, sizeof(p));
    p.name = S("default");
    p.channel = -1;
    for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
        p.targets.target_ms[TQ_SLA_FIRST_REPLY][q] = first;
        p.targets.target_ms[TQ_SLA_NEXT_REPLY][q] = next;
        p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][q] = wait;
        p.targets.target_ms[TQ_SLA_AGENT_WORK][q] = work;
    }
    p.business_hours = business_hours;
    struct tq_cmd c = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tenant);
    c.u.sla_policies_set.count = 1;
    c.u.sla_policies_set.policies = &p;
    FX_OK(f, &c);
}

#define MIN_MS  60000ull
#define HOUR_MS 3600000ull
#define DAY_MS  86400000ull

#endif
