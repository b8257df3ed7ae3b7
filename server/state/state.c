/* server/state/state.c: tq_state_apply(), the deterministic ticket state machine.
 *
 * Owns: every mutation of struct tq_state. One command = one record = one call of apply; the
 * same code runs live, in recovery, in audit replay and in compaction, so it is pure: the only
 * clock is cmd->now_ms (and, in TICK, the exact deadlines being processed), ids come from the
 * slabs' counters, nothing reads a file, a socket or a random source.
 *
 * Shape of every command handler: validate everything (ids exist in the tenant, enums in range,
 * lengths and counts within limits, the move is allowed), and only then mutate, emitting events
 * in the order the mutations happen. An error therefore leaves the state untouched and emits
 * nothing. Allocation failure is not an expected failure here (tq_x* aborts): the server cannot
 * keep a state it could not update.
 *
 * Cross-structure invariants (checked by tq_state_check_invariants in query.c):
 *   - a ticket is in its queue's heap (of its channel class) iff it is unassigned, not merged,
 *     and new or open (tq_st_ticket_should_queue);
 *   - an agent's load[class] is the number of tickets assigned to it that count for load
 *     (status new/open/pending/on_hold, not merged; solved work no longer takes capacity);
 *   - the deadline heap holds exactly the tickets with a pending timed item (SLA warning or
 *     breach of a running clock, wake_at, assignment timeout, auto-close), keyed at the earliest;
 *   - each tenant's SLA index (slaidx.c) holds exactly its tickets with a running SLA clock that
 *     has a deadline, keyed at the earliest such deadline (what SlaNearest walks);
 *   - no entity refers to an entity of another tenant.
 * They are kept by funnelling every ticket change through ticket_sync(), which re-derives queue
 * membership, load accounting, the deadline entry and the SLA index node from the ticket's
 * fields. The one change that skips it changes none of those fields: an inbound message
 * appended without a reopen, a new unanswered mark, a next-reply start or a window move
 * (ingest_touches_index; most inbound messages, three random index lines each).
 *
 * The status table (allowed moves and which clocks run in which status) is status_table below,
 * the one place in code; docs/tickets.md shows the same table.
 */
#include "state_internal.h"

#include <string.h>

/* Limits that are not in state.h, with their reason. */
#define TIME_MS_MAX     (1ull << 53)         /* keeps every sum of times far from overflow */
#define DURATION_MS_MAX TQ_SLA_TARGET_MS_MAX /* 10 years: any SLA target, window or lease */
_Static_assert(TQ_SLA_TARGET_MS_MAX < (1ull << 62), "SLA targets fit calendar's int64 durations");
#define ATTACHMENT_KEY_BYTES_MAX  (TQ_NAME_BYTES_MAX * 4)
#define FIELD_STRING_BYTES_MAX    (TQ_NAME_BYTES_MAX * 4)
#define TICK_ITEMS_PER_TICKET_MAX 64 /* bound on items one ticket yields per pop */

/* ==== the status table =================================================================== */

struct status_rule {
    uint8_t moves_to; /* bit per target status allowed by TICKET_UPDATE / reply */
    bool wait_runs;   /* requester wait clock runs */
    bool work_runs;   /* agent work clock runs */
    bool queueable;   /* may sit in a queue when unassigned */
    bool counts_load; /* counts toward the assignee's load */
};
#define TO(s) (1u << (s))
static const struct status_rule status_table[TQ_STATUS_COUNT] = {
    [TQ_STATUS_NEW] = {TO(TQ_STATUS_OPEN) | TO(TQ_STATUS_PENDING) | TO(TQ_STATUS_ON_HOLD) |
                           TO(TQ_STATUS_SOLVED),
                       true, true, true, true},
    [TQ_STATUS_OPEN] = {TO(TQ_STATUS_PENDING) | TO(TQ_STATUS_ON_HOLD) | TO(TQ_STATUS_SOLVED), true,
                        true, true, true},
    [TQ_STATUS_PENDING] = {TO(TQ_STATUS_OPEN) | TO(TQ_STATUS_ON_HOLD) | TO(TQ_STATUS_SOLVED), false,
                           false, false, true},
    [TQ_STATUS_ON_HOLD] = {TO(TQ_STATUS_OPEN) | TO(TQ_STATUS_PENDING) | TO(TQ_STATUS_SOLVED), true,
                           false, false, true},
    [TQ_STATUS_SOLVED] = {TO(TQ_STATUS_OPEN) | TO(TQ_STATUS_PENDING) | TO(TQ_STATUS_ON_HOLD) |
                              TO(TQ_STATUS_CLOSED),
                          false, false, false, false},
    [TQ_STATUS_CLOSED] = {0, false, false, false, false},
};

bool tq_state_status_move_allowed(enum tq_ticket_status from, enum tq_ticket_status to) {
    if ((unsigned)from >= TQ_STATUS_COUNT || (unsigned)to >= TQ_STATUS_COUNT) return false;
    return (status_table[from].moves_to & TO(to)) != 0;
}

bool tq_st_ticket_should_queue(const struct tq_ticket *t) {
    return t->assignee == 0 && tk_merged_into(t) == 0 && status_table[t->status].queueable;
}

bool tq_st_ticket_counts_load(const struct tq_ticket *t) {
    return t->assignee != 0 && tk_merged_into(t) == 0 && status_table[t->status].counts_load;
}

/* ==== apply context and events ============================================================ */

struct ctx {
    struct tq_state *s;
    const struct tq_cmd *cmd;
    uint64_t lsn, now;
    const struct tq_event_sink *sink;
    struct tq_cmd_result *res;
    uint32_t tenant_id;
    struct tq_tenant *tn; /* NULL for TENANT_CREATE, server-level tokens and TICK */
    struct tq_error *error;
    const struct tq_state_prefetch_hint *hint; /* NULL, or stage 0's hint for cmd */
};

/* Events are output only: a caller without a sink (replay into a scratch state, benchmarks)
 * does not pay for building them. The hot emitters check ev_wanted() first. */
static bool ev_wanted(const struct ctx *c) {
    return c->sink != NULL && c->sink->emit != NULL;
}

static void ev_send(struct ctx *c, struct tq_event *e) {
    if (ev_wanted(c)) c->sink->emit(c->sink->ctx, e);
}

static struct tq_event ev_make(struct ctx *c, enum tq_event_type type, uint64_t tenant,
                               uint64_t at) {
    /* an initialiser, not memset: compilers turn a 96-byte memset into rep stos */
    return (struct tq_event){.type = type, .lsn = c->lsn, .at_ms = at, .tenant_id = tenant};
}

static void ev_ticket(struct ctx *c, uint32_t tid, enum tq_event_type type,
                      enum tq_event_field field, int64_t old_value, int64_t new_value,
                      uint64_t at) {
    if (!ev_wanted(c)) return;
    const struct tq_ticket *t = st_ticket(c->s, tid);
    struct tq_event e = ev_make(c, type, t->tenant, at);
    e.ticket_id = tid;
    e.customer_id = t->customer;
    e.queue_id = t->queue;
    e.agent_id = t->assignee;
    e.field = field;
    e.old_value = old_value;
    e.new_value = new_value;
    ev_send(c, &e);
}

static void ev_sla(struct ctx *c, uint32_t tid, enum tq_event_type type, enum tq_sla_metric m,
                   uint64_t at) {
    if (!ev_wanted(c)) return;
    const struct tq_ticket *t = st_ticket(c->s, tid);
    struct tq_event e = ev_make(c, type, t->tenant, at);
    e.ticket_id = tid;
    e.customer_id = t->customer;
    e.queue_id = t->queue;
    e.agent_id = t->assignee;
    e.sla_metric = m;
    ev_send(c, &e);
}

static void ev_config(struct ctx *c, uint64_t queue, uint64_t agent) {
    struct tq_event e = ev_make(c, TQ_EVENT_CONFIG_CHANGED, c->tenant_id, c->now);
    e.queue_id = queue;
    e.agent_id = agent;
    e.old_value = c->cmd->type; /* which command changed the configuration */
    e.new_value = c->cmd->type;
    ev_send(c, &e);
}

static enum tq_err fail(struct ctx *c, enum tq_err code, const char *what) {
    return tq_error_set(c->error, code, "%s", what);
}

/* ==== analytics =========================================================================== */

static uint32_t hist_bucket(uint64_t v) {
    if (v < 4) return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t sub = (uint32_t)(v >> (e - 2)) & 3u;
    uint32_t b = 4 + (e - 2) * 4 + sub;
    TQ_ASSERT(b < TQ_HIST_BUCKETS);
    return b;
}

static void hist_add(struct tq_hist *h, uint64_t v) {
    h->buckets[hist_bucket(v)]++;
    h->count++;
}

uint64_t tq_st_hist_quantile(const struct tq_hist *h, uint32_t permille) {
    if (h->count == 0) return 0;
    uint64_t rank = (h->count * permille + 999) / 1000;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < TQ_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            if (b < 4) return b;
            uint32_t e = (b - 4) / 4 + 2, sub = (b - 4) % 4;
            uint64_t lo = (uint64_t)(4 + sub) << (e - 2);
            uint64_t hi = ((uint64_t)(5 + sub) << (e - 2)) - 1;
            return lo + (hi - lo) / 2; /* bucket midpoint: within 12.5% of the truth */
        }
    }
    return 0;
}

static void hourly_add(struct tq_tenant *tn, uint64_t at, unsigned channel) {
    uint64_t hour = at / 3600000u;
    uint32_t slot = (uint32_t)(hour % TQ_HOURLY_SLOTS);
    if (tn->hour_of_slot[slot] != hour) {
        if (tn->hour_of_slot[slot] > hour) return; /* older than the ring keeps */
        tn->hour_of_slot[slot] = hour;
        memset(tn->hourly[slot], 0, sizeof(tn->hourly[slot]));
    }
    tn->hourly[slot][channel]++;
}

/* ==== SLA arithmetic ====================================================================== */

static const struct tq_policy *ticket_policy(const struct tq_state *s, const struct tq_ticket *t) {
    if (t->policy == 0) return NULL;
    const struct tq_tenant *tn = st_tenant(s, t->tenant);
    TQ_ASSERT(t->policy <= tn->policy_count);
    return &tn->policies[t->policy - 1];
}

static const struct tq_calendar *ticket_calendar(const struct tq_state *s,
                                                 const struct tq_ticket *t) {
    const struct tq_policy *p = ticket_policy(s, t);
    if (p == NULL || !p->business_hours) return NULL;
    return st_tenant(s, t->tenant)->calendar;
}

/* start + d business ms. d never exceeds TQ_SLA_TARGET_MS_MAX (targets and windows are capped
 * at validation and at snapshot load), so it fits calendar's signed duration. A calendar that
 * never reaches the duration (no business hours at all, or beyond 2^55 ms) answers INT64_MAX:
 * that deadline is "never", UINT64_MAX, which no TICK reaches. */
static uint64_t cal_add(const struct tq_calendar *cal, uint64_t start, uint64_t d) {
    TQ_ASSERT(d <= TQ_SLA_TARGET_MS_MAX);
    if (cal == NULL) return start + d;
    int64_t r = tq_calendar_add_business_ms(cal, (int64_t)start, (int64_t)d);
    TQ_ASSERT(r >= (int64_t)start);
    return r == INT64_MAX ? UINT64_MAX : (uint64_t)r;
}

static uint64_t cal_span(const struct tq_calendar *cal, uint64_t from, uint64_t to) {
    if (to <= from) return 0;
    if (cal == NULL) return to - from;
    int64_t r = tq_calendar_business_ms(cal, (int64_t)from, (int64_t)to);
    TQ_ASSERT(r >= 0);
    return (uint64_t)r;
}

uint64_t tq_st_clock_target(const struct tq_state *s, const struct tq_ticket *t,
                            enum tq_sla_metric m) {
    if (m == TQ_SLA_REPLY_WINDOW) return st_tenant(s, t->tenant)->reply_window_ms[t->origin];
    const struct tq_policy *p = ticket_policy(s, t);
    return p == NULL ? 0 : p->target_ms[m][t->priority];
}

static struct tq_clock *duration_clock(struct tq_ticket *t, enum tq_sla_metric m) {
    TQ_ASSERT(m == TQ_SLA_REQUESTER_WAIT || m == TQ_SLA_AGENT_WORK);
    return m == TQ_SLA_REQUESTER_WAIT ? &t->wait : &t->work;
}

uint64_t tq_st_clock_elapsed(const struct tq_state *s, const struct tq_ticket *t,
                             enum tq_sla_metric m) {
    switch (m) {
    case TQ_SLA_REQUESTER_WAIT: return t->wait.elapsed_ms;
    case TQ_SLA_AGENT_WORK: return t->work.elapsed_ms;
    case TQ_SLA_FIRST_REPLY:
        return t->sla_state[m] == TQ_SLA_RUNNING
                   ? 0
                   : (t->first_response_ms > t->created_ms
                          ? cal_span(ticket_calendar(s, t), t->created_ms, t->first_response_ms)
                          : 0);
    case TQ_SLA_NEXT_REPLY:
    case TQ_SLA_REPLY_WINDOW: return 0;
    }
    return 0;
}

static uint64_t reply_mark(const struct tq_ticket *t, enum tq_sla_metric m) {
    return m == TQ_SLA_FIRST_REPLY ? t->created_ms : t->unanswered_ms;
}

/* Recomputes the deadline of a RUNNING clock from its start, elapsed time and the target at
 * the ticket's current priority (the rule for priority changes: targets are re-derived from the
 * original start and the time already paused). */
static void clock_rederive(const struct tq_state *s, struct tq_ticket *t, enum tq_sla_metric m) {
    if (t->sla_state[m] != TQ_SLA_RUNNING || m == TQ_SLA_REPLY_WINDOW) return;
    uint64_t target = tq_st_clock_target(s, t, m);
    const struct tq_calendar *cal = ticket_calendar(s, t);
    uint64_t deadline = 0;
    if (m == TQ_SLA_FIRST_REPLY || m == TQ_SLA_NEXT_REPLY) {
        if (target != 0) deadline = cal_add(cal, reply_mark(t, m), target);
        if (m == TQ_SLA_FIRST_REPLY) {
            t->first_reply_deadline_ms = deadline;
        } else {
            t->next_reply_deadline_ms = deadline;
        }
        return;
    }
    struct tq_clock *k = duration_clock(t, m);
    if (target != 0) {
        deadline = cal_add(cal, k->mark_ms, target > k->elapsed_ms ? target - k->elapsed_ms : 0);
    }
    k->deadline_ms = deadline;
}

/* What the clock arithmetic of one ticket needs from its tenant and policy, looked up once
 * per ticket_next_item() rather than once per clock (it runs for every ticket change). */
struct sla_env {
    const struct tq_tenant *tn;
    const struct tq_policy *policy; /* NULL = no SLA */
    const struct tq_calendar *cal;  /* ticket_calendar(): NULL = calendar time */
};

static struct sla_env sla_env_of(const struct tq_state *s, const struct tq_ticket *t) {
    struct sla_env e = {st_tenant(s, t->tenant), ticket_policy(s, t), NULL};
    if (e.policy != NULL && e.policy->business_hours) e.cal = e.tn->calendar;
    TQ_DEBUG_ASSERT(e.cal == ticket_calendar(s, t));
    return e;
}

/* The instant a RUNNING clock with a target reaches the tenant's warning fraction, or
 * UINT64_MAX if warnings are off (permille 0 or >= 1000) or already sent. */
static uint64_t clock_warn_at(const struct sla_env *e, const struct tq_ticket *t,
                              enum tq_sla_metric m) {
    uint32_t p = e->tn->warn_permille;
    if (p == 0 || p >= 1000 || (t->sla_warned & (1u << m)) != 0) return UINT64_MAX;
    uint64_t deadline = tk_clock_deadline(t, m);
    uint64_t target = m == TQ_SLA_REPLY_WINDOW ? e->tn->reply_window_ms[t->origin]
                      : e->policy == NULL      ? 0
                                               : e->policy->target_ms[m][t->priority];
    uint64_t warn_span = target * p / 1000;
    uint64_t at;
    if (m == TQ_SLA_REPLY_WINDOW) {
        at = deadline >= target ? deadline - target + warn_span : deadline;
    } else if (m == TQ_SLA_FIRST_REPLY || m == TQ_SLA_NEXT_REPLY) {
        at = cal_add(e->cal, reply_mark(t, m), warn_span);
    } else {
        const struct tq_clock *k = m == TQ_SLA_REQUESTER_WAIT ? &t->wait : &t->work;
        at = cal_add(e->cal, k->mark_ms, warn_span > k->elapsed_ms ? warn_span - k->elapsed_ms : 0);
    }
    return at < deadline ? at : deadline;
}

enum item_kind { ITEM_WARN = 0, ITEM_BREACH = 1, ITEM_WAKE = 2, ITEM_TIMEOUT = 3, ITEM_CLOSE = 4 };

struct item {
    uint64_t at;
    enum item_kind kind;
    enum tq_sla_metric metric;
    uint64_t sla_next; /* the earliest running SLA deadline, 0 = none (tq_st_ticket_sla_next) */
};

static void item_consider(struct item *best, uint64_t at, enum item_kind kind,
                          enum tq_sla_metric m) {
    if (at < best->at ||
        (at == best->at && (kind < best->kind || (kind == best->kind && m < best->metric)))) {
        best->at = at;
        best->kind = kind;
        best->metric = m;
    }
}

/* A RUNNING clock's warning and breach. */
__attribute__((always_inline)) static inline void clock_consider(struct item *best,
                                                                 const struct sla_env *env,
                                                                 const struct tq_ticket *t,
                                                                 enum tq_sla_metric m) {
    if (t->sla_state[m] != TQ_SLA_RUNNING) return;
    uint64_t deadline = tk_clock_deadline(t, m);
    if (deadline == 0) return;
    item_consider(best, clock_warn_at(env, t, m), ITEM_WARN, m);
    item_consider(best, deadline, ITEM_BREACH, m);
    if (best->sla_next == 0 || deadline < best->sla_next) best->sla_next = deadline;
}

/* The ticket's earliest timed item (UINT64_MAX if none). Ties: by kind, then metric. Its
 * sla_next is the SLA index's key (the same clocks' deadlines: one pass serves both). */
static struct item ticket_next_item(const struct tq_state *s, const struct tq_ticket *t) {
    struct item best = {UINT64_MAX, ITEM_CLOSE, TQ_SLA_REPLY_WINDOW, 0};
    if (tk_merged_into(t) != 0 || t->status == TQ_STATUS_CLOSED) return best;
    struct sla_env env = sla_env_of(s, t);
    /* one call per metric with a constant m: tk_clock_deadline's and clock_warn_at's branches on
     * the metric fold away (this runs on every ticket change) */
    clock_consider(&best, &env, t, TQ_SLA_FIRST_REPLY);
    clock_consider(&best, &env, t, TQ_SLA_NEXT_REPLY);
    clock_consider(&best, &env, t, TQ_SLA_REQUESTER_WAIT);
    clock_consider(&best, &env, t, TQ_SLA_AGENT_WORK);
    clock_consider(&best, &env, t, TQ_SLA_REPLY_WINDOW);
    _Static_assert(TQ_SLA_METRIC_COUNT == 5, "every metric is considered above");
    if ((t->status == TQ_STATUS_PENDING || t->status == TQ_STATUS_ON_HOLD) && tk_wake_at(t)) {
        item_consider(&best, tk_wake_at(t), ITEM_WAKE, 0);
    }
    if (t->assignee != 0 && status_table[t->status].queueable) {
        uint64_t timeout = st_queue(s, t->queue)->timeout_ms;
        if (timeout != 0) item_consider(&best, t->routing_ms + timeout, ITEM_TIMEOUT, 0);
    }
    uint64_t auto_close = env.tn->auto_close_ms;
    if (t->status == TQ_STATUS_SOLVED && auto_close != 0) {
        item_consider(&best, t->solved_ms + auto_close, ITEM_CLOSE, 0);
    }
    return best;
}

uint64_t tq_st_ticket_due(const struct tq_state *s, const struct tq_ticket *t) {
    return ticket_next_item(s, t).at;
}

uint64_t tq_st_ticket_sla_due(const struct tq_ticket *t) {
    uint64_t due = UINT64_MAX;
    for (int m = 0; m < TQ_SLA_REPLY_WINDOW; m++) {
        uint8_t st = t->sla_state[m];
        if (st != TQ_SLA_RUNNING && st != TQ_SLA_BREACHED) continue;
        uint64_t d = tk_clock_deadline(t, (enum tq_sla_metric)m);
        if (d != 0 && d < due) due = d;
    }
    return due;
}

/* Where tq_state_prefetch's walk of an inbound message's chain stands (hint->step). */
enum {
    TQ_PREFETCH_STEP_SLOT = 0, /* identity table slot fetched by stage 0 */
    TQ_PREFETCH_STEP_IDENTITY, /* candidate identity fetched */
    TQ_PREFETCH_STEP_CUSTOMER, /* its customer fetched */
    TQ_PREFETCH_STEP_TICKET,   /* the customer's newest ticket fetched */
    TQ_PREFETCH_STEP_DONE,
};

/* Prefetches every cache line of [p, p + n): a ticket is 208 bytes, so it spans four lines
 * whatever its offset, and apply reads fields in all of them. */
static void prefetch_span(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + n;
    for (; a < end; a += 64)
        __builtin_prefetch((const void *)a);
}

/* The ticket's lines and its index entry (prefetch_ticket_children then fetches what hangs off
 * them: the deadline entry and its neighbours, the queue heap parent, the extras block). */
static void prefetch_ticket(const struct tq_state *s, uint32_t tid) {
    prefetch_span(st_ticket(s, tid), sizeof(struct tq_ticket));
    __builtin_prefetch(st_tkidx(s, tid));
}

/* ==== queue heaps ========================================================================= */

/* Queue order: priority desc, SLA due asc, (re)entered asc, id asc. A total order, so the
 * heap's top does not depend on insertion history. */
#define QKEY_DUE_MAX ((1ull << 62) - 1) /* deadlines are < 2^54 (times < 2^53 + 10 years) */
_Static_assert(TQ_PRIORITY_COUNT <= 4, "the priority fits the key's top two bits");

uint64_t tq_st_queue_key(const struct tq_ticket *t) {
    TQ_ASSERT(t->priority < TQ_PRIORITY_COUNT);
    uint64_t due = tq_st_ticket_sla_due(t); /* UINT64_MAX = none: sorts after every deadline */
    if (due > QKEY_DUE_MAX) due = QKEY_DUE_MAX;
    return (uint64_t)(TQ_PRIORITY_COUNT - 1u - t->priority) << 62 | due;
}

static bool q_before(const struct tq_state *s, uint32_t a, uint32_t b) {
    /* The key is cached in the index entry when the ticket enters or is re-keyed, so
     * comparisons read the dense index, and a change that leaves the key alone costs no heap
     * work. Only equal keys (same priority and due) look at the tickets. */
    uint64_t ka = st_tkidx(s, a)->qkey, kb = st_tkidx(s, b)->qkey;
    if (ka != kb) return ka < kb;
    const struct tq_ticket *ta = st_ticket(s, a), *tb = st_ticket(s, b);
    if (ta->routing_ms != tb->routing_ms) return ta->routing_ms < tb->routing_ms;
    return a < b;
}

bool tq_st_queue_before(const struct tq_state *s, uint32_t a, uint32_t b) {
    return q_before(s, a, b);
}

static void qh_set(struct tq_state *s, struct tq_heap32 *h, uint32_t pos, uint32_t id) {
    h->ids[pos] = id;
    st_tkidx(s, id)->queue_pos = pos + 1;
}

static void qh_up(struct tq_state *s, struct tq_heap32 *h, uint32_t pos) {
    uint32_t id = h->ids[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!q_before(s, id, h->ids[parent])) break;
        qh_set(s, h, pos, h->ids[parent]);
        pos = parent;
    }
    qh_set(s, h, pos, id);
}

static void qh_down(struct tq_state *s, struct tq_heap32 *h, uint32_t pos) {
    uint32_t id = h->ids[pos];
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= h->count) break;
        if (child + 1 < h->count && q_before(s, h->ids[child + 1], h->ids[child])) child++;
        if (!q_before(s, h->ids[child], id)) break;
        qh_set(s, h, pos, h->ids[child]);
        pos = child;
    }
    qh_set(s, h, pos, id);
}

static void qh_insert(struct tq_state *s, struct tq_heap32 *h, uint32_t id) {
    if (h->count == h->cap) {
        uint32_t cap = h->cap == 0 ? 16 : h->cap + h->cap / 2;
        h->ids = tq_xrealloc(h->ids, h->cap * sizeof(uint32_t), cap * sizeof(uint32_t));
        h->cap = cap;
    }
    h->ids[h->count] = id;
    h->count++;
    qh_up(s, h, h->count - 1);
}

static void qh_remove(struct tq_state *s, struct tq_heap32 *h, uint32_t pos) {
    TQ_ASSERT(pos < h->count);
    st_tkidx(s, h->ids[pos])->queue_pos = 0;
    h->count--;
    if (pos == h->count) return;
    h->ids[pos] = h->ids[h->count];
    qh_up(s, h, pos);
    qh_down(s, h, st_tkidx(s, h->ids[pos])->queue_pos - 1);
}

static struct tq_heap32 *ticket_heap(struct tq_state *s, const struct tq_ticket *t) {
    return &st_queue(s, t->queue)->heap[tq_channel_class_of((enum tq_channel)t->origin)];
}

/* ==== deadline heap ======================================================================= */

static bool due_before(const struct tq_duenode *a, const struct tq_duenode *b) {
    return a->due_ms != b->due_ms ? a->due_ms < b->due_ms : a->ticket < b->ticket;
}

static void dh_set(struct tq_state *s, uint32_t pos, struct tq_duenode n) {
    s->due[pos] = n;
    st_tkidx(s, n.ticket)->due_pos = pos + 1;
}

static void dh_up(struct tq_state *s, uint32_t pos) {
    struct tq_duenode n = s->due[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!due_before(&n, &s->due[parent])) break;
        dh_set(s, pos, s->due[parent]);
        pos = parent;
    }
    dh_set(s, pos, n);
}

static void dh_down(struct tq_state *s, uint32_t pos) {
    struct tq_duenode n = s->due[pos];
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= s->due_count) break;
        if (child + 1 < s->due_count && due_before(&s->due[child + 1], &s->due[child])) child++;
        if (!due_before(&s->due[child], &n)) break;
        dh_set(s, pos, s->due[child]);
        pos = child;
    }
    dh_set(s, pos, n);
}

/* Makes room for one more deadline entry (called when due_count reaches due_cap). Below
 * TQ_ST_TABLE_MAP_BYTES_MIN the array is malloc'd and grows by half (due_cap = its entries);
 * from there on it grows in place a huge page at a time (tq_st_array_grow). With a prefault
 * hook due_cap stops one page short of the writable end: the growth comes as the entries enter
 * the last writable page, so the page after it is populated by the hook while that one fills.
 * Its resident share stays 12 bytes per ticket plus at most two pages (one without a hook),
 * where growing by copies cost 12..18 bytes, and up to 30 just before a growth with the next
 * array populated ahead (the hook's spare). */
static void dh_grow(struct tq_state *s) {
    TQ_ASSERT(s->due_count == s->due_cap);
    size_t used = ((size_t)s->due_count + 1) * sizeof(*s->due); /* after this insert */
    uint32_t cap = s->due_cap == 0 ? 1024 : s->due_cap + s->due_cap / 2;
    if (s->due_reserved == 0 && (size_t)cap * sizeof(*s->due) < TQ_ST_TABLE_MAP_BYTES_MIN) {
        s->due = tq_st_table_realloc(s->due, s->due_bytes, cap * sizeof(*s->due));
        s->due_bytes = cap * sizeof(*s->due);
        s->due_cap = cap;
        return;
    }
    s->due = tq_st_array_grow(s, s->due, used, &s->due_bytes, &s->due_reserved);
    size_t ahead = s->pf.fn != NULL ? TQ_HUGE_PAGE_BYTES : 0; /* the page being populated */
    TQ_ASSERT(s->due_bytes >= used + ahead);
    size_t entries = (s->due_bytes - ahead) / sizeof(*s->due);
    TQ_ASSERT(entries > s->due_count && entries <= UINT32_MAX);
    s->due_cap = (uint32_t)entries;
}

static void dh_update(struct tq_state *s, uint32_t tid, uint64_t due) {
    struct tq_tkidx *t = st_tkidx(s, tid);
    if (due == UINT64_MAX) {
        if (t->due_pos == 0) return;
        uint32_t pos = t->due_pos - 1;
        t->due_pos = 0;
        s->due_count--;
        if (pos == s->due_count) return;
        s->due[pos] = s->due[s->due_count];
        dh_up(s, pos);
        dh_down(s, st_tkidx(s, s->due[pos].ticket)->due_pos - 1);
        return;
    }
    if (t->due_pos != 0) {
        uint32_t pos = t->due_pos - 1;
        uint64_t due_old = s->due[pos].due_ms;
        if (due_old == due) return;
        s->due[pos].due_ms = due;
        /* (due, ticket) is exact: a later due only sinks, an earlier one only rises; the
         * other sift would read a random parent or two children for nothing */
        if (due > due_old) {
            dh_down(s, pos);
        } else {
            dh_up(s, pos);
        }
        return;
    }
    if (s->due_count == s->due_cap) dh_grow(s);
    s->due[s->due_count] = (struct tq_duenode){due, tid};
    s->due_count++;
    dh_up(s, s->due_count - 1);
}

/* ==== ticket sync: the one place that re-derives queue, load and deadline entries ========== */

static void tenant_mark_dirty(struct tq_state *s, uint32_t tenant_id) {
    struct tq_tenant *tn = st_tenant(s, tenant_id);
    if (tn->autoassign_dirty) return;
    tn->autoassign_dirty = true;
    if (s->dirty_n == s->dirty_cap) {
        uint32_t cap = s->dirty_cap == 0 ? 16 : s->dirty_cap * 2;
        s->dirty = tq_xrealloc(s->dirty, s->dirty_cap * sizeof(uint32_t), cap * sizeof(uint32_t));
        s->dirty_cap = cap;
    }
    s->dirty[s->dirty_n++] = tenant_id;
}

/* Re-derives queue membership/position, load accounting and the deadline entry of ticket tid
 * from its fields. at is the time of the change (a ticket entering its queue enters at at). */
static void ticket_sync(struct tq_state *s, uint32_t tid, uint64_t at) {
    struct tq_ticket *t = st_ticket(s, tid);
    struct tq_tkidx *x = st_tkidx(s, tid);
    /* queue */
    bool should = tq_st_ticket_should_queue(t);
    if (should && x->queue_pos == 0) {
        t->routing_ms = at;
        x->qkey = tq_st_queue_key(t);
        qh_insert(s, ticket_heap(s, t), tid);
        t->flags |= TQ_TF_QUEUED;
        tq_st_qage_enter(s, t->queue, tid);
        if (st_queue(s, t->queue)->auto_assign) tenant_mark_dirty(s, t->tenant);
    } else if (!should && x->queue_pos != 0) {
        qh_remove(s, ticket_heap(s, t), x->queue_pos - 1);
        t->flags &= (uint8_t)~TQ_TF_QUEUED;
        tq_st_qage_left(s, t->queue, tid);
    } else if (should) {
        uint64_t key = tq_st_queue_key(t);
        if (key != x->qkey) {
            /* The tie-break behind the key (routing_ms, id) does not change while queued
             * (routing_ms is set on entry; "the assignee acted" needs an assignee, and an
             * assigned ticket is not queued), so a greater key only sinks and a smaller one
             * only rises: one sift, not two (each reads a random neighbour's entry). */
            struct tq_heap32 *h = ticket_heap(s, t);
            bool sinks = key > x->qkey;
            x->qkey = key;
            if (sinks) {
                qh_down(s, h, x->queue_pos - 1);
            } else {
                qh_up(s, h, x->queue_pos - 1);
            }
        }
    }
    /* load */
    bool counts = tq_st_ticket_counts_load(t);
    bool counted = (t->flags & TQ_TF_IN_LOAD) != 0;
    if (counts != counted) {
        struct tq_agent *a = st_agent(s, t->assignee);
        unsigned cls = tq_channel_class_of((enum tq_channel)t->origin);
        if (counts) {
            a->load[cls]++;
            t->flags |= TQ_TF_IN_LOAD;
        } else {
            TQ_ASSERT(a->load[cls] > 0);
            a->load[cls]--;
            t->flags &= (uint8_t)~TQ_TF_IN_LOAD;
            tenant_mark_dirty(s, t->tenant);
        }
    }
    /* deadline */
    struct item next = ticket_next_item(s, t);
    dh_update(s, tid, next.at);
    tq_st_slaidx_sync(s, tid, next.sla_next); /* the tenant's running SLA deadlines (slaidx.c) */
}

/* ==== ticket mutations (validated by the caller) ========================================== */

static void clock_pause(struct tq_state *s, struct tq_ticket *t, enum tq_sla_metric m,
                        uint64_t at) {
    if (t->sla_state[m] != TQ_SLA_RUNNING) return;
    struct tq_clock *k = duration_clock(t, m);
    k->elapsed_ms += cal_span(ticket_calendar(s, t), k->mark_ms, at);
    k->mark_ms = 0;
    k->deadline_ms = 0;
    t->sla_state[m] = TQ_SLA_PAUSED;
}

static void clock_resume(struct tq_state *s, struct tq_ticket *t, enum tq_sla_metric m,
                         uint64_t at) {
    if (t->sla_state[m] != TQ_SLA_PAUSED) return;
    struct tq_clock *k = duration_clock(t, m);
    k->mark_ms = at;
    t->sla_state[m] = TQ_SLA_RUNNING;
    clock_rederive(s, t, m);
}

static void clock_achieve(struct ctx *c, uint32_t tid, enum tq_sla_metric m, uint64_t at) {
    struct tq_ticket *t = st_ticket(c->s, tid);
    if (t->sla_state[m] != TQ_SLA_RUNNING && t->sla_state[m] != TQ_SLA_PAUSED) return;
    bool had_target = tq_st_clock_target(c->s, t, m) != 0;
    if (m == TQ_SLA_REQUESTER_WAIT || m == TQ_SLA_AGENT_WORK) {
        clock_pause(c->s, t, m, at);
    }
    t->sla_state[m] = TQ_SLA_ACHIEVED;
    if (had_target) ev_sla(c, tid, TQ_EVENT_SLA_ACHIEVED, m, at);
}

static void clock_cancel(struct tq_ticket *t, enum tq_sla_metric m) {
    if (t->sla_state[m] != TQ_SLA_RUNNING && t->sla_state[m] != TQ_SLA_PAUSED) return;
    t->sla_state[m] = TQ_SLA_NONE;
    switch (m) {
    case TQ_SLA_FIRST_REPLY: t->first_reply_deadline_ms = 0; break;
    case TQ_SLA_NEXT_REPLY: t->next_reply_deadline_ms = 0; break;
    case TQ_SLA_REQUESTER_WAIT: t->wait.deadline_ms = 0; break;
    case TQ_SLA_AGENT_WORK: t->work.deadline_ms = 0; break;
    case TQ_SLA_REPLY_WINDOW: t->window_deadline_ms = 0; break;
    }
}

/* Moves the ticket to status `to` at `at` with the status table's effects on the clocks.
 * The caller validated the move (or it is one of apply's own moves: wake, auto-close,
 * reopen by an inbound message, merge tombstone). */
static void ticket_set_status(struct ctx *c, uint32_t tid, enum tq_ticket_status to, uint64_t at) {
    struct tq_state *s = c->s;
    struct tq_ticket *t = st_ticket(s, tid);
    enum tq_ticket_status from = (enum tq_ticket_status)t->status;
    if (from == to) return;
    TQ_ASSERT(from != TQ_STATUS_CLOSED);
    struct tq_tenant *tn = st_tenant(s, t->tenant);
    /* Clocks count up to the change under the old status... */
    if (from == TQ_STATUS_SOLVED) {
        /* Reopen: achieved duration clocks resume (they never restart). */
        for (int m = TQ_SLA_REQUESTER_WAIT; m <= TQ_SLA_AGENT_WORK; m++) {
            if (t->sla_state[m] == TQ_SLA_ACHIEVED) t->sla_state[m] = TQ_SLA_PAUSED;
        }
    }
    if (status_table[from].wait_runs && !status_table[to].wait_runs) {
        clock_pause(s, t, TQ_SLA_REQUESTER_WAIT, at);
    }
    if (status_table[from].work_runs && !status_table[to].work_runs) {
        clock_pause(s, t, TQ_SLA_AGENT_WORK, at);
    }
    tn->by_status[from]--;
    tn->by_status[to]++;
    t->status = (uint8_t)to;
    t->updated_ms = at;
    ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_STATUS, from, to, at);
    /* ...and then follow the new status. */
    if (to == TQ_STATUS_SOLVED) {
        clock_achieve(c, tid, TQ_SLA_REQUESTER_WAIT, at);
        clock_achieve(c, tid, TQ_SLA_AGENT_WORK, at);
        clock_cancel(t, TQ_SLA_FIRST_REPLY);
        clock_cancel(t, TQ_SLA_NEXT_REPLY);
        t->unanswered_ms = 0;
        if (t->solved_ms == 0)
            hist_add(&tn->resolution, at > t->created_ms ? at - t->created_ms : 0);
        t->solved_ms = at;
    } else if (to == TQ_STATUS_CLOSED) {
        for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++)
            clock_cancel(t, (enum tq_sla_metric)m);
        t->unanswered_ms = 0;
        tq_st_set_wake_at(t, 0);
    } else {
        if (status_table[to].wait_runs) clock_resume(s, t, TQ_SLA_REQUESTER_WAIT, at);
        if (status_table[to].work_runs) clock_resume(s, t, TQ_SLA_AGENT_WORK, at);
    }
    if (to != TQ_STATUS_PENDING && to != TQ_STATUS_ON_HOLD && tk_wake_at(t) != 0 &&
        to != TQ_STATUS_CLOSED) {
        /* wake_at only means something while pending or on hold */
        ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_WAKE_AT, (int64_t)tk_wake_at(t), 0, at);
        tq_st_set_wake_at(t, 0);
    }
}

static void ticket_set_assignee(struct ctx *c, uint32_t tid, uint32_t agent, uint64_t at) {
    struct tq_state *s = c->s;
    struct tq_ticket *t = st_ticket(s, tid);
    uint32_t old = t->assignee;
    if (old == agent) return;
    if (t->flags & TQ_TF_IN_LOAD) {
        struct tq_agent *a = st_agent(s, old);
        unsigned cls = tq_channel_class_of((enum tq_channel)t->origin);
        TQ_ASSERT(a->load[cls] > 0);
        a->load[cls]--;
        t->flags &= (uint8_t)~TQ_TF_IN_LOAD;
        tenant_mark_dirty(s, t->tenant);
    }
    t->assignee = agent;
    t->routing_ms = at;
    t->updated_ms = at;
    if (agent != 0) st_agent(s, agent)->last_assigned_ms = at;
    ev_ticket(c, tid, TQ_EVENT_ASSIGNED, TQ_FIELD_ASSIGNEE, old, agent, at);
}

static void ticket_set_queue(struct ctx *c, uint32_t tid, uint32_t queue, uint64_t at) {
    struct tq_state *s = c->s;
    struct tq_ticket *t = st_ticket(s, tid);
    uint32_t old = t->queue;
    if (old == queue) return;
    uint32_t queue_pos = st_tkidx(s, tid)->queue_pos;
    if (queue_pos != 0) {
        qh_remove(s, ticket_heap(s, t), queue_pos - 1);
        t->flags &= (uint8_t)~TQ_TF_QUEUED;
        tq_st_qage_left(s, old, tid);
    }
    t->queue = queue;
    t->updated_ms = at;
    ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_QUEUE, old, queue, at);
}

static bool agent_has_room(const struct tq_agent *a, unsigned cls) {
    return a->load[cls] < a->capacity[cls];
}

/* ==== TICK items ========================================================================= */

static void item_process(struct ctx *c, uint32_t tid, struct item it) {
    struct tq_state *s = c->s;
    struct tq_ticket *t = st_ticket(s, tid);
    struct tq_tenant *tn = st_tenant(s, t->tenant);
    uint64_t at = it.at;
    switch (it.kind) {
    case ITEM_WARN:
        t->sla_warned |= (uint8_t)(1u << it.metric);
        tn->sla_warnings++;
        ev_sla(c, tid, TQ_EVENT_SLA_WARNING, it.metric, at);
        break;
    case ITEM_BREACH:
        t->sla_warned |= (uint8_t)(1u << it.metric);
        t->sla_state[it.metric] = TQ_SLA_BREACHED;
        tn->sla_breaches++;
        ev_sla(c, tid, TQ_EVENT_SLA_BREACH, it.metric, at);
        break;
    case ITEM_WAKE: {
        /* A wake-up set in the past happens when it is noticed, not before the last change. */
        uint64_t when = at > t->updated_ms ? at : t->updated_ms;
        ticket_set_status(c, tid, TQ_STATUS_OPEN, when);
        break;
    }
    case ITEM_TIMEOUT: {
        uint64_t when = at > t->updated_ms ? at : t->updated_ms;
        ticket_set_assignee(c, tid, 0, when);
        ticket_sync(s, tid, when);
        return;
    }
    case ITEM_CLOSE: {
        uint64_t when = at > t->updated_ms ? at : t->updated_ms;
        ticket_set_status(c, tid, TQ_STATUS_CLOSED, when);
        break;
    }
    }
    ticket_sync(s, tid, at > t->updated_ms ? at : t->updated_ms);
}

/* ==== auto-assignment ===================================================================== */

/* Best online agent of the tenant with room in class cls: lowest load in the class, then the
 * one who waited longest since their last assignment, then the lowest id. 0 if none. */
static uint32_t best_agent(const struct tq_state *s, const struct tq_tenant *tn, unsigned cls) {
    uint32_t best = 0;
    const struct tq_agent *b = NULL;
    for (uint32_t i = 0; i < tn->agent_n; i++) {
        const struct tq_agent *a = st_agent(s, tn->agent_ids[i]);
        if (a->presence != TQ_PRESENCE_ONLINE || !agent_has_room(a, cls)) continue;
        if (b == NULL || a->load[cls] < b->load[cls] ||
            (a->load[cls] == b->load[cls] && a->last_assigned_ms < b->last_assigned_ms)) {
            best = tn->agent_ids[i];
            b = a;
        }
    }
    return best;
}

static void autoassign_tenant(struct ctx *c, uint32_t tenant_id) {
    struct tq_state *s = c->s;
    struct tq_tenant *tn = st_tenant(s, tenant_id);
    for (unsigned cls = 0; cls < TQ_CHANNEL_CLASS_COUNT; cls++) {
        for (;;) {
            uint32_t best_ticket = 0;
            for (uint32_t i = 0; i < tn->queue_n; i++) {
                const struct tq_queue *q = st_queue(s, tn->queue_ids[i]);
                if (!q->auto_assign || q->heap[cls].count == 0) continue;
                uint32_t top = q->heap[cls].ids[0];
                if (best_ticket == 0 || q_before(s, top, best_ticket)) best_ticket = top;
            }
            if (best_ticket == 0) break;
            uint32_t agent = best_agent(s, tn, cls);
            if (agent == 0) break;
            ticket_set_assignee(c, best_ticket, agent, c->now);
            ticket_sync(s, best_ticket, c->now);
            TQ_ASSERT(st_agent(s, agent)->load[cls] <= st_agent(s, agent)->capacity[cls]);
        }
    }
}

static void autoassign_run(struct ctx *c) {
    struct tq_state *s = c->s;
    /* The list may grow while we run (an assignment frees nothing, but be safe). */
    for (uint32_t i = 0; i < s->dirty_n; i++) {
        uint32_t tid = s->dirty[i];
        st_tenant(s, tid)->autoassign_dirty = false;
        autoassign_tenant(c, tid);
    }
    for (uint32_t i = 0; i < s->dirty_n; i++)
        st_tenant(s, s->dirty[i])->autoassign_dirty = false;
    s->dirty_n = 0;
}

/* ==== validation helpers =================================================================== */

static bool time_ok(uint64_t ms) {
    return ms < TIME_MS_MAX;
}
static bool dur_ok(uint64_t ms) {
    return ms <= DURATION_MS_MAX;
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
 * ASCII runs are checked 64, then 16 bytes at a time: bodies are mostly ASCII. */
typedef uint64_t u64x2 __attribute__((vector_size(16)));
static bool ascii_only(const uint8_t *p, size_t n) {
    /* four 16-byte ORs per 64 bytes (SSE2 on x86-64, NEON on arm64), then 16 at a time, then
     * the last 16 bytes once more (overlapping) instead of a byte loop */
    u64x2 acc2 = {0, 0};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        u64x2 a, b, c, d;
        memcpy(&a, p + i, 16);
        memcpy(&b, p + i + 16, 16);
        memcpy(&c, p + i + 32, 16);
        memcpy(&d, p + i + 48, 16);
        acc2 |= (a | b) | (c | d);
    }
    for (; i + 16 <= n; i += 16) {
        u64x2 a;
        memcpy(&a, p + i, 16);
        acc2 |= a;
    }
    uint64_t acc = acc2[0] | acc2[1];
    if (i < n) {
        if (n >= 16) { /* the last 16 bytes again, overlapping */
            u64x2 a;
            memcpy(&a, p + n - 16, 16);
            acc |= a[0] | a[1];
        } else {
            if (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                acc |= w;
                i += 8;
            }
            for (; i < n; i++)
                acc |= p[i];
        }
    }
    return (acc & 0x8080808080808080ull) == 0;
}

static bool utf8_valid(const uint8_t *p, size_t n) {
    if (ascii_only(p, n)) return true; /* most bodies: one OR per 8 bytes, no branches */
    size_t i = 0;
    while (i < n) {
        if (i + 32 <= n) {
            uint64_t w[4];
            memcpy(w, p + i, 32);
            if (((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ull) == 0) {
                i += 32;
                continue;
            }
        }
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (b >= 0xc2 && b <= 0xdf) {
            len = 2;
            cp = b & 0x1fu;
        } else if (b >= 0xe0 && b <= 0xef) {
            len = 3;
            cp = b & 0x0fu;
        } else if (b >= 0xf0 && b <= 0xf4) {
            len = 4;
            cp = b & 0x07u;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += len;
    }
    return true;
}

bool tq_state_text_valid(const char *text, size_t len) {
    return len == 0 || (text != NULL && utf8_valid((const uint8_t *)text, len));
}

/* Opaque bytes (external ids, provider ids, storage keys): only the length is checked. */
static enum tq_err check_bytes(struct ctx *c, struct tq_str v, uint32_t min, uint32_t max,
                               const char *what) {
    if (v.len < min || v.len > max || (v.len > 0 && v.ptr == NULL)) {
        return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT, "%s: length %u not in [%u, %u]",
                            what, v.len, min, max);
    }
    return TQ_OK;
}

/* Text (names, subjects, bodies, tags, field values): length and UTF-8. */
static enum tq_err check_str(struct ctx *c, struct tq_str v, uint32_t min, uint32_t max,
                             const char *what) {
    enum tq_err e = check_bytes(c, v, min, max, what);
    if (e == TQ_OK && v.len > 0 && !utf8_valid((const uint8_t *)v.ptr, v.len)) {
        return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT, "%s: not valid UTF-8", what);
    }
    return e;
}

static enum tq_err check_attachments(struct ctx *c, uint32_t n, const struct tq_attachment *a) {
    if (n > TQ_ATTACHMENTS_PER_MESSAGE_MAX) {
        return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT, "attachments: %u > %u", n,
                            TQ_ATTACHMENTS_PER_MESSAGE_MAX);
    }
    for (uint32_t i = 0; i < n; i++) {
        enum tq_err e = check_bytes(c, a[i].key, 1, ATTACHMENT_KEY_BYTES_MAX, "attachment key");
        if (e == TQ_OK) e = check_str(c, a[i].name, 0, TQ_NAME_BYTES_MAX, "attachment name");
        if (e == TQ_OK) e = check_str(c, a[i].mime_type, 0, TQ_NAME_BYTES_MAX, "mime type");
        if (e != TQ_OK) return e;
    }
    return TQ_OK;
}

static enum tq_err check_room(struct ctx *c, const struct tq_slab *slab, uint32_t n,
                              const char *what) {
    if ((uint64_t)slab->next_id + n > TQ_ID_MAX) {
        return tq_error_set(c->error, TQ_ERR_RESOURCE_EXHAUSTED, "%s: id space exhausted", what);
    }
    return TQ_OK;
}

/* Identities are also bounded by the tag bits of their lookup table (struct tq_idtab). */
static enum tq_err check_identity_room(struct ctx *c) {
    if (c->s->identities.next_id > TQ_IDENTITIES_MAX) {
        return tq_error_set(c->error, TQ_ERR_RESOURCE_EXHAUSTED, "identities: 2^28 - 1 per state");
    }
    return TQ_OK;
}

/* Normalises an external id for identity lookup: email addresses are case-insensitive (ASCII
 * lower-casing of the whole address, what every support desk does in practice). Eight bytes
 * at a time (it runs twice per inbound message: the prefetch stage and apply): a byte is an
 * ASCII capital when its low 7 bits are in 'A'..'Z' and its top bit is clear; those get 0x20
 * added (XOR, the bit is clear in a capital). out has room for in.len bytes. Returns the
 * normalised id (in.len bytes): out for an e-mail address, in.ptr itself for every other
 * channel (nothing changes: no copy). */
static uint64_t lower_ascii8(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t low7 = w & ~high;
    uint64_t ge_a = low7 + (0x80u - 'A') * ones; /* top bit set: low7 >= 'A' (no carries) */
    uint64_t gt_z = low7 + (0x7fu - 'Z') * ones; /* top bit set: low7 > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~w & high;
    return w ^ (upper >> 2);
}

static const char *normalise_ext(enum tq_channel ch, struct tq_str in, char *out) {
    if (ch != TQ_CHANNEL_EMAIL || in.len == 0) return in.ptr; /* already normal: no copy */
    if (in.len < 8) {
        for (uint32_t i = 0; i < in.len; i++) {
            char ch8 = in.ptr[i];
            if (ch8 >= 'A' && ch8 <= 'Z') ch8 = (char)(ch8 - 'A' + 'a');
            out[i] = ch8;
        }
        return out;
    }
    uint64_t w;
    for (uint32_t i = 0; i + 8 <= in.len; i += 8) {
        memcpy(&w, in.ptr + i, 8);
        w = lower_ascii8(w);
        memcpy(out + i, &w, 8);
    }
    /* the last 8 bytes again, overlapping: lower-casing is per byte, so the overlap agrees */
    memcpy(&w, in.ptr + in.len - 8, 8);
    w = lower_ascii8(w);
    memcpy(out + in.len - 8, &w, 8);
    return out;
}

/* The identity with key hash h and key (tenant, ch, norm) among slots (the identity table's,
 * or the old one it is growing from), 0 = none. */
static inline uint32_t identity_probe(const struct tq_state *s, const uint32_t *slots,
                                      uint64_t mask, uint64_t h, uint64_t tenant,
                                      enum tq_channel ch, const char *norm, uint32_t len) {
    uint32_t tag = tq_idtab_tag(&s->ident_index, h);
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = slots[i];
        if (slot == 0) return 0;
        if ((slot & ~TQ_IDTAB_ID_MASK) != tag) continue; /* another key: not read */
        uint32_t id = slot & TQ_IDTAB_ID_MASK;
        const struct tq_identity *x = st_identity(s, id);
        if (x->hash == h && x->tenant == tenant && x->channel == ch && x->ext_len == len &&
            memcmp(ident_ext(x), norm, len) == 0) {
            return id;
        }
    }
}

/* The identity with key (tenant, ch, norm), 0 = none. known_hash is the key's hash when the
 * caller has it already (an inbound message: the prefetch stage computed it), else 0; the
 * hash used is returned in *hash_out. */
static uint32_t identity_find(const struct tq_state *s, uint64_t tenant, enum tq_channel ch,
                              const char *norm, uint32_t len, uint64_t known_hash,
                              uint64_t *hash_out) {
    uint64_t h = known_hash != 0 ? known_hash : tq_st_identity_hash(tenant, ch, norm, len);
    TQ_DEBUG_ASSERT(h == tq_st_identity_hash(tenant, ch, norm, len));
    *hash_out = h;
    const struct tq_idtab *tab = &s->ident_index;
    TQ_DEBUG_ASSERT(tab->id_mask == TQ_IDTAB_ID_MASK);
    uint32_t id = identity_probe(s, tab->slots, tab->mask, h, tenant, ch, norm, len);
    if (id != 0 || __builtin_expect(tab->old == NULL, 1)) return id;
    return identity_probe(s, tab->old, tab->old_mask, h, tenant, ch, norm, len); /* growing */
}

uint32_t tq_st_identity_lookup(const struct tq_state *s, uint64_t tenant, enum tq_channel ch,
                               struct tq_str ext) {
    char buf[TQ_EXTERNAL_ID_BYTES_MAX];
    if (ext.len == 0 || ext.len > TQ_EXTERNAL_ID_BYTES_MAX) return 0;
    const char *norm = normalise_ext(ch, ext, buf);
    uint32_t len = ext.len;
    uint64_t h;
    return identity_find(s, tenant, ch, norm, len, 0, &h);
}

static uint64_t identity_hash_of(const struct tq_state *s, uint32_t id) {
    return st_identity(s, id)->hash;
}

static uint64_t token_hash_of(const struct tq_state *s, uint32_t id) {
    const uint8_t *h = st_token(s, id)->hash;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)h[i] << (8 * i);
    return v;
}

/* The idempotency table: a slot is (fingerprint << 28 | message id), 0 = empty. The 4-bit
 * fingerprint (the low bits of the key hash) filters out 15/16 of the probes that would
 * otherwise each cost a cache miss into the message slab, at no memory cost: message ids are
 * therefore limited to 2^28 - 1 (TQ_MESSAGES_MAX, 268 million messages in one state). A hit is
 * confirmed by the full 64-bit hash kept in the message, its channel and its ticket's tenant.
 * The home slot is the high bits of the hash scaled to the capacity (h * cap >> 64), so the
 * capacity need not be a power of two: the table grows by half at 3/4 load and its share per
 * message stays between 5.3 and 8 bytes (a doubling table swings between 5.3 and 10.7, which
 * would break the 32-byte budget just after each doubling). Growing needs only the hashes kept
 * in the messages.
 *
 * Growth is incremental (struct tq_msgtab): re-inserting every key in one apply took one loop
 * turn of tens of milliseconds at a million keys and seconds at a hundred million, with the
 * server answering nobody meanwhile. The new table is filled from the message slab in id order,
 * a few ids per insert, as the one-shot rehash did (sequential reads of the slab with the slot
 * 16 messages ahead prefetched, not one random message read per old slot); keys of messages
 * added meanwhile go straight into the new table. The layout of both tables depends only on the
 * sequence of inserts, so apply stays deterministic. */
#define MSG_ID_BITS 28u
#define MSG_ID_MASK ((1u << MSG_ID_BITS) - 1)
_Static_assert(MSG_ID_MASK == TQ_MESSAGES_MAX, "message ids fit the idempotency slots");
__extension__ typedef unsigned __int128 u128;

static uint32_t msg_fp(uint64_t h) {
    return (uint32_t)(h & 15u) << MSG_ID_BITS;
}

static uint64_t msg_home_in(uint64_t cap, uint64_t h) {
    return (uint64_t)(((u128)h * cap) >> 64);
}

static uint64_t msg_home(const struct tq_msgtab *t, uint64_t h) {
    return msg_home_in(t->cap, h);
}

static void msgtab_init(struct tq_msgtab *t, uint64_t cap) {
    t->slots = tq_st_table_alloc(cap * sizeof(uint32_t));
    t->cap = cap;
    t->count = 0;
    t->old = NULL;
    t->old_cap = 0;
    t->old_next = t->old_end = t->old_step = 0;
}

static void msgtab_free(struct tq_msgtab *t) {
    tq_st_table_free(t->slots, t->cap * sizeof(uint32_t));
    t->slots = NULL;
    tq_st_table_free(t->old, t->old_cap * sizeof(uint32_t)); /* NULL: nothing */
    t->old = NULL;
    tq_st_spare_free(&t->spare);
}

/* Probes one table (cap slots) for key hash h of (tenant, channel): the message id, or 0 and
 * then *empty_out is the empty slot the probe ended on. Inlined into message_find's probe of
 * the new table (every inbound message with a key); the old table's probe is out of line. */
__attribute__((always_inline)) static inline uint32_t
msgtab_probe(const struct tq_state *s, const uint32_t *slots, uint64_t cap, uint64_t tenant,
             unsigned channel, uint64_t h, uint64_t *empty_out) {
    uint32_t fp = msg_fp(h);
    for (uint64_t i = msg_home_in(cap, h);; i = i + 1 == cap ? 0 : i + 1) {
        uint32_t slot = slots[i];
        if (slot == 0) {
            *empty_out = i;
            return 0;
        }
        if ((slot & ~MSG_ID_MASK) != fp) continue;
        uint32_t id = slot & MSG_ID_MASK;
        const struct tq_message *m = st_message(s, id);
        if (m->ext_hash == h && msg_chan(m) == channel &&
            st_ticket(s, m->ticket)->tenant == tenant) {
            return id;
        }
    }
}

/* During a copy: the probe of the old table, after a miss in the new one. */
__attribute__((noinline)) static uint32_t
message_find_old(const struct tq_state *s, uint64_t tenant, unsigned channel, uint64_t h) {
    const struct tq_msgtab *tab = &s->msg_index;
    uint64_t old_empty;
    uint32_t id = msgtab_probe(s, tab->old, tab->old_cap, tenant, channel, h, &old_empty);
    TQ_DEBUG_ASSERT(id == 0 || (id >= tab->old_next && id < tab->old_end));
    return id;
}

/* The message stored under key hash h for (tenant, channel), 0 = none; then *empty_out is the
 * empty slot of the (new) table the probe ended on, where msgtab_put would store h: an insert
 * right after (no other insert in between) goes there without probing again. During a copy
 * a key not in the new table may still be in the old one (a message below old_end). */
static uint32_t message_find(const struct tq_state *s, uint64_t tenant, unsigned channel,
                             uint64_t h, uint64_t *empty_out) {
    const struct tq_msgtab *tab = &s->msg_index;
    if (__builtin_expect(tab->old != NULL, 0)) {
        __builtin_prefetch(&tab->old[msg_home_in(tab->old_cap, h)]); /* overlaps the first */
    }
    uint32_t id = msgtab_probe(s, tab->slots, tab->cap, tenant, channel, h, empty_out);
    if (id != 0 || __builtin_expect(tab->old == NULL, 1)) return id;
    return message_find_old(s, tenant, channel, h);
}

/* Stores id under h in the (new) table; not counted (a copied key is counted already). */
static void msgtab_place(struct tq_msgtab *t, uint64_t h, uint32_t id) {
    uint64_t i = msg_home(t, h);
    while (t->slots[i] != 0)
        i = i + 1 == t->cap ? 0 : i + 1;
    t->slots[i] = msg_fp(h) | id;
}

static void msgtab_put(struct tq_msgtab *t, uint64_t h, uint32_t id) {
    msgtab_place(t, h, id);
    t->count++;
}

/* Copies the keys of up to `ids` more messages (from old_next on) into the new table, in id
 * order; frees the old table when the copy reaches old_end. */
static void msgtab_migrate(struct tq_state *s, uint32_t ids) {
    struct tq_msgtab *t = &s->msg_index;
    if (t->old == NULL) return;
    TQ_ASSERT(t->old_next >= 1 && t->old_next <= t->old_end);
    uint32_t end = t->old_end;
    uint32_t stop = end - t->old_next > ids ? t->old_next + ids : end;
    for (uint32_t mid = t->old_next; mid < stop; mid++) {
        if (mid + 16 < end) { /* the slots are random: fetch the one 16 messages ahead */
            uint64_t ahead = st_message(s, mid + 16)->ext_hash;
            if (ahead != 0) __builtin_prefetch(&t->slots[msg_home(t, ahead)], 1);
        }
        uint64_t mh = st_message(s, mid)->ext_hash;
        if (mh != 0) msgtab_place(t, mh, mid);
    }
    t->old_next = stop;
    if (stop == end) { /* unmapped off this thread where the server gave a release hook */
        tq_st_table_release(s, t->old, t->old_cap * sizeof(uint32_t));
        t->old = NULL;
        t->old_cap = 0;
        t->old_next = t->old_end = t->old_step = 0;
    }
}

/* Starts a growth to cap slots: the table becomes `old` and an empty one of cap slots takes
 * its place; the keys of messages 1 .. end - 1 (all of them with a key are in the table) are
 * to be copied. old_step is the ids copied per insert: enough to end the copy within a quarter
 * of the inserts the new table takes before it grows again (headroom), so a copy is always
 * over before the next growth starts (asserted there), and the old table's bytes are given
 * back early (at 10 million messages tq-state-bench measures after the copy that started at
 * 8.6 million has ended). With every message keyed that is 8 ids per insert. */
static void msgtab_grow(struct tq_state *s, uint64_t cap, uint32_t end) {
    struct tq_msgtab *t = &s->msg_index;
    TQ_ASSERT(t->old == NULL); /* the previous copy ended long ago */
    TQ_ASSERT(cap > t->cap && t->count * 4 <= cap * 3 && end >= 1);
    uint64_t headroom = cap * 3 / 4 - t->count; /* inserts before the next growth, at least */
    TQ_ASSERT(headroom >= 4);
    uint64_t quarter = headroom / 4;
    uint64_t step = ((uint64_t)end - 1 + quarter - 1) / quarter;
    t->old = t->slots;
    t->old_cap = t->cap;
    t->old_next = 1;
    t->old_end = end;
    t->old_step = step > 0 ? (uint32_t)step : 1;
    t->slots = tq_st_table_take(&t->spare, cap * sizeof(uint32_t));
    t->cap = cap;
}

/* Re-creates the idempotency table with cap slots from the keys of messages 1 .. end - 1 (all
 * of them with a key are in the table), in one go: where the whole table is wanted at once
 * (msgtab_reserve: recovery, a snapshot load). A copy in progress is finished first. */
static void msgtab_rehash(struct tq_state *s, uint64_t cap, uint32_t end) {
    struct tq_msgtab *t = &s->msg_index;
    msgtab_migrate(s, UINT32_MAX);
    TQ_ASSERT(t->old == NULL);
    uint64_t old_cap = t->cap, old_count = t->count;
    TQ_ASSERT(cap > old_cap && old_count * 4 <= cap * 3);
    /* the old table is not read (the keys come from the messages): freed before the new one
     * is touched, so the peak is the new table alone */
    tq_st_table_free(t->slots, old_cap * sizeof(uint32_t));
    t->slots = tq_st_table_take(&t->spare, cap * sizeof(uint32_t));
    t->cap = cap;
    t->count = 0;
    for (uint32_t mid = 1; mid < end; mid++) {
        if (mid + 16 < end) { /* the slots are random: fetch the one 16 messages ahead */
            uint64_t ahead = st_message(s, mid + 16)->ext_hash;
            if (ahead != 0) __builtin_prefetch(&t->slots[msg_home(t, ahead)], 1);
        }
        uint64_t mh = st_message(s, mid)->ext_hash;
        if (mh != 0) msgtab_put(t, mh, mid);
    }
    TQ_ASSERT(t->count == old_count);
}

/* Makes room for `more` keys beyond the table's count (at most 3/4 full then); the table holds
 * the keys of messages 1 .. end - 1. Finishes a copy in progress. */
static void msgtab_reserve(struct tq_state *s, uint64_t more, uint32_t end) {
    struct tq_msgtab *t = &s->msg_index;
    msgtab_migrate(s, UINT32_MAX);
    uint64_t want = t->count + (more < TQ_MESSAGES_MAX ? more : TQ_MESSAGES_MAX);
    if (want > TQ_MESSAGES_MAX) want = TQ_MESSAGES_MAX;
    uint64_t cap = want + want / 3 + 1;
    if (cap > t->cap) msgtab_rehash(s, cap, end);
    TQ_ASSERT(t->old == NULL);
    TQ_ASSERT(t->count * 4 <= t->cap * 3);
}

void tq_state_reserve_messages(struct tq_state *s, uint64_t more) {
    msgtab_reserve(s, more, s->messages.next_id); /* between applies every key is in */
}

/* Adds message id under key hash h. empty_slot: the slot message_find ended on for h in this
 * apply (no insert since), or UINT64_MAX. The messages below id with a key are in the table.
 * The copy step comes after the key is placed: message_find's empty slot is the new table's,
 * and a copied key could take it. */
static void message_index_add(struct tq_state *s, uint64_t h, uint32_t id, uint64_t empty_slot) {
    struct tq_msgtab *t = &s->msg_index;
    TQ_ASSERT(id != 0 && id <= MSG_ID_MASK);
    if (__builtin_expect(s->pf.fn != NULL, 0) && (t->count + 1) * 8 > t->cap * 5) {
        /* 5/8 full: ready the table it will grow into */
        tq_st_table_prepare(s, &t->spare, (t->cap + t->cap / 2) * sizeof(uint32_t));
    }
    if ((t->count + 1) * 4 <= t->cap * 3 && empty_slot != UINT64_MAX) {
        TQ_ASSERT(empty_slot < t->cap && t->slots[empty_slot] == 0);
        TQ_DEBUG_ASSERT(msg_home(t, h) == empty_slot || t->slots[msg_home(t, h)] != 0);
        t->slots[empty_slot] = msg_fp(h) | id;
        t->count++;
    } else {
        if ((t->count + 1) * 4 > t->cap * 3) msgtab_grow(s, t->cap + t->cap / 2, id);
        msgtab_put(t, h, id);
    }
    if (__builtin_expect(t->old != NULL, 0)) msgtab_migrate(s, t->old_step);
    TQ_ASSERT(t->count * 4 <= t->cap * 3);
}

/* Identity insertion keeping the customer's chain in ascending id order (ids only grow). */
static uint32_t identity_add(struct tq_state *s, uint32_t tenant, uint32_t customer,
                             enum tq_channel ch, const char *norm, uint32_t len, uint64_t h) {
    uint32_t id = tq_st_slab_new(&s->identities);
    struct tq_identity *x = st_identity(s, id);
    x->hash = h;
    tq_st_identity_set_ext(s, x, norm, len);
    x->tenant = tenant;
    x->customer = customer;
    x->channel = (uint8_t)ch;
    struct tq_customer *cu = st_customer(s, customer);
    if (cu->ident_head == 0) {
        cu->ident_head = id;
    } else {
        uint32_t p = cu->ident_head;
        while (st_identity(s, p)->next != 0)
            p = st_identity(s, p)->next;
        st_identity(s, p)->next = id;
    }
    cu->ident_count++;
    tq_st_idtab_insert(s, &s->ident_index, h, id, identity_hash_of);
    return id;
}

static uint32_t customer_add(struct ctx *c, struct tq_str name, struct tq_str language) {
    struct tq_state *s = c->s;
    uint32_t id = tq_st_slab_new(&s->customers);
    struct tq_customer *cu = st_customer(s, id);
    cu->tenant = c->tenant_id;
    cu->name = tq_st_strdup(s, name.ptr, name.len);
    cu->language = tq_st_strdup(s, language.ptr, language.len);
    c->tn->customer_count++;
    struct tq_event e = ev_make(c, TQ_EVENT_CUSTOMER_CREATED, c->tenant_id, c->now);
    e.customer_id = id;
    ev_send(c, &e);
    return id;
}

/* ==== tags and custom fields ============================================================== */

struct extras_draft {
    uint64_t wake_at_ms;
    uint32_t merged_into, follow_up_of;
    uint32_t tag_count, field_count;
    uint32_t tags[TQ_TAGS_PER_TICKET_MAX];
    struct tq_tag_field fields[TQ_CUSTOM_FIELDS_PER_TICKET_MAX];
};

static void draft_load(const struct tq_ticket *t, struct extras_draft *d) {
    d->tag_count = 0;
    d->field_count = 0;
    d->wake_at_ms = 0;
    d->merged_into = d->follow_up_of = 0;
    if (t->extras == NULL) return;
    d->wake_at_ms = t->extras->wake_at_ms;
    d->merged_into = t->extras->merged_into;
    d->follow_up_of = t->extras->follow_up_of;
    d->tag_count = t->extras->tag_count;
    d->field_count = t->extras->field_count;
    memcpy(d->tags, extras_tags(t->extras), d->tag_count * sizeof(uint32_t));
    memcpy(d->fields, t->extras->fields, d->field_count * sizeof(struct tq_tag_field));
}

static void draft_store(struct tq_ticket *t, const struct extras_draft *d) {
    if (t->extras != NULL) {
        tq_free(t->extras, extras_bytes(t->extras->tag_count, t->extras->field_count));
        t->extras = NULL;
    }
    if (d->tag_count == 0 && d->field_count == 0 && d->wake_at_ms == 0 && d->merged_into == 0 &&
        d->follow_up_of == 0) {
        return;
    }
    struct tq_ticket_extras *x = tq_xalloc(extras_bytes(d->tag_count, d->field_count));
    x->wake_at_ms = d->wake_at_ms;
    x->merged_into = d->merged_into;
    x->follow_up_of = d->follow_up_of;
    x->tag_count = d->tag_count;
    x->field_count = d->field_count;
    memcpy(x->fields, d->fields, d->field_count * sizeof(struct tq_tag_field));
    memcpy(extras_tags(x), d->tags, d->tag_count * sizeof(uint32_t));
    t->extras = x;
}

static bool draft_has_tag(const struct extras_draft *d, uint32_t tag) {
    for (uint32_t i = 0; i < d->tag_count; i++) {
        if (d->tags[i] == tag) return true;
    }
    return false;
}

/* Adds tag by value (interning it); false if the ticket already has the maximum. */
static bool draft_add_tag(struct tq_state *s, struct extras_draft *d, struct tq_str tag) {
    uint32_t id = tq_st_intern(s, tag);
    if (draft_has_tag(d, id)) return true;
    if (d->tag_count == TQ_TAGS_PER_TICKET_MAX) return false;
    d->tags[d->tag_count++] = id;
    return true;
}

void tq_st_set_wake_at(struct tq_ticket *t, uint64_t v) {
    if (tk_wake_at(t) == v) return;
    struct extras_draft d;
    draft_load(t, &d);
    d.wake_at_ms = v;
    draft_store(t, &d);
}

void tq_st_set_merged_into(struct tq_ticket *t, uint32_t v) {
    struct extras_draft d;
    draft_load(t, &d);
    d.merged_into = v;
    draft_store(t, &d);
}

void tq_st_set_follow_up_of(struct tq_ticket *t, uint32_t v) {
    struct extras_draft d;
    draft_load(t, &d);
    d.follow_up_of = v;
    draft_store(t, &d);
}

bool tq_st_ticket_has_tag(const struct tq_ticket *t, uint32_t tag) {
    if (t->extras == NULL) return false;
    const uint32_t *tags = extras_tags(t->extras);
    for (uint32_t i = 0; i < t->extras->tag_count; i++) {
        if (tags[i] == tag) return true;
    }
    return false;
}

/* The first policy of the tenant's current list whose every set criterion matches. */
static uint32_t policy_select(const struct tq_state *s, const struct tq_tenant *tn,
                              const struct tq_ticket *t) {
    for (uint32_t i = 0; i < tn->policy_current; i++) {
        uint32_t idx = tn->policy_first + i;
        const struct tq_policy *p = &tn->policies[idx];
        if (p->queue != 0 && p->queue != t->queue) continue;
        if (p->channel >= 0 && (uint32_t)p->channel != t->origin) continue;
        if (p->tag != 0 && !tq_st_ticket_has_tag(t, p->tag)) continue;
        (void)s;
        return idx + 1;
    }
    return 0;
}

/* ==== commands: tenants, tokens, queues, agents ============================================ */

static enum tq_err cmd_tenant_create(struct ctx *c) {
    struct tq_state *s = c->s;
    enum tq_err e = check_str(c, c->cmd->u.tenant_create.name, 1, TQ_NAME_BYTES_MAX, "name");
    if (e == TQ_OK) e = check_room(c, &s->tenants, 1, "tenants");
    if (e != TQ_OK) return e;
    uint32_t id = tq_st_slab_new(&s->tenants);
    struct tq_tenant *tn = st_tenant(s, id);
    tn->name = tq_st_strdup(s, c->cmd->u.tenant_create.name.ptr, c->cmd->u.tenant_create.name.len);
    tn->auto_close_ms = 4ull * 86400000; /* the common helpdesk default: 4 days */
    tn->warn_permille = 750;
    tn->attempts_max = TQ_OUTBOX_ATTEMPTS_DEFAULT_MAX;
    tn->reply_window_ms[TQ_CHANNEL_WHATSAPP] = 24ull * 3600000; /* Meta's 24 h windows */
    tn->reply_window_ms[TQ_CHANNEL_MESSENGER] = 24ull * 3600000;
    tn->reply_window_ms[TQ_CHANNEL_INSTAGRAM] = 24ull * 3600000;
    tn->ticket_number_next = 1;
    c->res->tenant_id = id;
    struct tq_event ev = ev_make(c, TQ_EVENT_TENANT_CREATED, id, c->now);
    ev_send(c, &ev);
    return TQ_OK;
}

/* Re-derives every SLA deadline and deadline entry of a tenant's tickets (settings, hours). */
static void tenant_resync(struct tq_state *s, uint32_t tenant_id, uint64_t at) {
    uint32_t n = tq_slab_count(&s->tickets);
    for (uint32_t id = 1; id <= n; id++) {
        struct tq_ticket *t = st_ticket(s, id);
        if (t->tenant != tenant_id) continue;
        for (int m = 0; m < TQ_SLA_REPLY_WINDOW; m++)
            clock_rederive(s, t, (enum tq_sla_metric)m);
        ticket_sync(s, id, at);
    }
}

static enum tq_err cmd_tenant_settings(struct ctx *c) {
    const __typeof__(c->cmd->u.tenant_settings) *in = &c->cmd->u.tenant_settings;
    if (!dur_ok(in->auto_close_ms)) return fail(c, TQ_ERR_INVALID_ARGUMENT, "auto_close_ms");
    if (in->sla_warning_permille > 1000) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "sla_warning_permille > 1000");
    }
    if (in->outbox_attempts_max < 1 || in->outbox_attempts_max > TQ_OUTBOX_ATTEMPTS_LIMIT) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "outbox_attempts_max not in [1, 15]");
    }
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
        if (in->reply_window_ms[i] > TQ_SLA_TARGET_MS_MAX) {
            return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT,
                                "reply_window_ms[%s] above TQ_SLA_TARGET_MS_MAX (10 years)",
                                tq_channel_name((enum tq_channel)i));
        }
        if (in->default_queue_id[i] != 0 &&
            tq_st_queue_get(c->s, c->tenant_id, in->default_queue_id[i]) == NULL) {
            return fail(c, TQ_ERR_NOT_FOUND, "default queue");
        }
    }
    struct tq_tenant *tn = c->tn;
    tn->auto_close_ms = in->auto_close_ms;
    tn->warn_permille = in->sla_warning_permille;
    tn->attempts_max = in->outbox_attempts_max;
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
        tn->reply_window_ms[i] = in->reply_window_ms[i];
        tn->default_queue[i] = (uint32_t)in->default_queue_id[i];
    }
    tenant_resync(c->s, c->tenant_id, c->now);
    ev_config(c, 0, 0);
    return TQ_OK;
}

static enum tq_err cmd_policies_set(struct ctx *c) {
    struct tq_state *s = c->s;
    uint32_t n = c->cmd->u.sla_policies_set.count;
    const struct tq_sla_policy *in = c->cmd->u.sla_policies_set.policies;
    if (n > TQ_SLA_POLICIES_MAX) return fail(c, TQ_ERR_INVALID_ARGUMENT, "policies > 64");
    for (uint32_t i = 0; i < n; i++) {
        enum tq_err e = check_str(c, in[i].name, 0, TQ_NAME_BYTES_MAX, "policy name");
        if (e == TQ_OK) e = check_str(c, in[i].tag, 0, TQ_NAME_BYTES_MAX, "policy tag");
        if (e != TQ_OK) return e;
        if (in[i].queue_id != 0 && tq_st_queue_get(s, c->tenant_id, in[i].queue_id) == NULL) {
            return fail(c, TQ_ERR_NOT_FOUND, "policy queue");
        }
        if (in[i].channel < -1 || in[i].channel >= TQ_CHANNEL_COUNT) {
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "policy channel");
        }
        for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
            for (int p = 0; p < TQ_PRIORITY_COUNT; p++) {
                if (in[i].targets.target_ms[m][p] > TQ_SLA_TARGET_MS_MAX) {
                    return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT,
                                        "policy %u target_ms[%s][%s] above "
                                        "TQ_SLA_TARGET_MS_MAX (10 years)",
                                        i, tq_sla_metric_name((enum tq_sla_metric)m),
                                        tq_priority_name((enum tq_priority)p));
                }
            }
        }
    }
    struct tq_tenant *tn = c->tn;
    if (tn->policy_count + n > tn->policy_cap) {
        uint32_t cap = tn->policy_cap == 0 ? 16 : tn->policy_cap;
        while (cap < tn->policy_count + n)
            cap *= 2;
        tn->policies = tq_xrealloc(tn->policies, tn->policy_cap * sizeof(struct tq_policy),
                                   cap * sizeof(struct tq_policy));
        tn->policy_cap = cap;
    }
    tn->policy_first = tn->policy_count;
    tn->policy_current = n;
    for (uint32_t i = 0; i < n; i++) {
        struct tq_policy *p = &tn->policies[tn->policy_count++];
        memset(p, 0, sizeof(*p));
        p->name = tq_st_strdup(s, in[i].name.ptr, in[i].name.len);
        p->queue = (uint32_t)in[i].queue_id;
        p->channel = in[i].channel;
        p->tag = in[i].tag.len > 0 ? tq_st_intern(s, in[i].tag) : 0;
        p->business_hours = in[i].business_hours;
        memcpy(p->target_ms, in[i].targets.target_ms, sizeof(p->target_ms));
    }
    ev_config(c, 0, 0);
    return TQ_OK;
}

static enum tq_err cmd_business_hours(struct ctx *c) {
    const struct tq_calendar *cal = c->cmd->u.business_hours_set.calendar;
    if (cal == NULL) return fail(c, TQ_ERR_INVALID_ARGUMENT, "calendar missing");
    enum tq_err e = tq_calendar_validate(cal, c->error);
    if (e != TQ_OK) return e;
    struct tq_tenant *tn = c->tn;
    if (!tq_calendar_has_hours(cal)) {
        if (tn->calendar != NULL) tq_free(tn->calendar, sizeof(*tn->calendar));
        tn->calendar = NULL;
    } else {
        if (tn->calendar == NULL) tn->calendar = tq_xalloc(sizeof(*tn->calendar));
        *tn->calendar = *cal;
    }
    tenant_resync(c->s, c->tenant_id, c->now);
    ev_config(c, 0, 0);
    return TQ_OK;
}

static enum tq_err cmd_token_issue(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.token_issue) *in = &c->cmd->u.token_issue;
    if ((unsigned)in->role > TQ_ROLE_INTEGRATION) return fail(c, TQ_ERR_INVALID_ARGUMENT, "role");
    if ((in->role == TQ_ROLE_SERVER_ADMIN) != (c->tenant_id == 0)) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "server_admin tokens have no tenant, others do");
    }
    if (in->role == TQ_ROLE_AGENT) {
        if (tq_st_agent_get(s, c->tenant_id, in->agent_id) == NULL) {
            return fail(c, TQ_ERR_NOT_FOUND, "agent");
        }
    } else if (in->agent_id != 0) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "agent_id only for agent tokens");
    }
    enum tq_err e = check_str(c, in->name, 0, TQ_NAME_BYTES_MAX, "token name");
    if (e == TQ_OK) e = check_room(c, &s->tokens, 1, "tokens");
    if (e != TQ_OK) return e;
    struct tq_token_view v;
    if (tq_state_token_find(s, in->hash, &v) != TQ_ERR_NOT_FOUND) {
        return fail(c, TQ_ERR_ALREADY_EXISTS, "token hash");
    }
    uint32_t id = tq_st_slab_new(&s->tokens);
    struct tq_token *tk = st_token(s, id);
    memcpy(tk->hash, in->hash, 32);
    tk->name = tq_st_strdup(s, in->name.ptr, in->name.len);
    tk->tenant = c->tenant_id;
    tk->agent = (uint32_t)in->agent_id;
    tk->role = (uint8_t)in->role;
    tq_st_idtab_insert(s, &s->token_index, token_hash_of(s, id), id, token_hash_of);
    c->res->token_id = id;
    ev_config(c, 0, in->agent_id);
    return TQ_OK;
}

static enum tq_err cmd_token_revoke(struct ctx *c) {
    uint64_t id = c->cmd->u.token_revoke.token_id;
    if (id == 0 || id >= c->s->tokens.next_id) return fail(c, TQ_ERR_NOT_FOUND, "token");
    struct tq_token *tk = st_token(c->s, (uint32_t)id);
    if (c->tenant_id != 0 && tk->tenant != c->tenant_id) return fail(c, TQ_ERR_NOT_FOUND, "token");
    if (tk->revoked) return fail(c, TQ_ERR_FAILED_PRECONDITION, "token already revoked");
    tk->revoked = 1;
    c->res->token_id = id;
    ev_config(c, 0, tk->agent);
    return TQ_OK;
}

static void id_list_push(uint32_t **ids, uint32_t *n, uint32_t *cap, uint32_t id) {
    if (*n == *cap) {
        uint32_t nc = *cap == 0 ? 8 : *cap * 2;
        *ids = tq_xrealloc(*ids, *cap * sizeof(uint32_t), nc * sizeof(uint32_t));
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
}

static enum tq_err cmd_queue(struct ctx *c, bool create) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.queue) *in = &c->cmd->u.queue;
    struct tq_queue *q = NULL;
    if (!create) {
        q = tq_st_queue_get(s, c->tenant_id, in->queue_id);
        if (q == NULL) return fail(c, TQ_ERR_NOT_FOUND, "queue");
    }
    enum tq_err e = check_str(c, in->name, create ? 1 : 0, TQ_NAME_BYTES_MAX, "queue name");
    if (e == TQ_OK && create) e = check_room(c, &s->queues, 1, "queues");
    if (e != TQ_OK) return e;
    if (!dur_ok(in->assignment_timeout_ms)) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "assignment_timeout_ms");
    }
    uint32_t id = create ? tq_st_slab_new(&s->queues) : (uint32_t)in->queue_id;
    q = st_queue(s, id);
    if (create) {
        q->tenant = c->tenant_id;
        id_list_push(&c->tn->queue_ids, &c->tn->queue_n, &c->tn->queue_cap, id);
    }
    if (in->name.len > 0) q->name = tq_st_strdup(s, in->name.ptr, in->name.len);
    bool timeout_changed = q->timeout_ms != in->assignment_timeout_ms;
    q->auto_assign = in->auto_assign;
    q->timeout_ms = in->assignment_timeout_ms;
    if (q->auto_assign) tenant_mark_dirty(s, c->tenant_id);
    if (!create && timeout_changed) {
        uint32_t n = tq_slab_count(&s->tickets);
        for (uint32_t t = 1; t <= n; t++) {
            if (st_ticket(s, t)->queue == id) ticket_sync(s, t, c->now);
        }
    }
    c->res->queue_id = id;
    ev_config(c, id, 0);
    return TQ_OK;
}

static enum tq_err cmd_agent(struct ctx *c, bool create) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.agent) *in = &c->cmd->u.agent;
    if (!create && tq_st_agent_get(s, c->tenant_id, in->agent_id) == NULL) {
        return fail(c, TQ_ERR_NOT_FOUND, "agent");
    }
    enum tq_err e = check_str(c, in->name, create ? 1 : 0, TQ_NAME_BYTES_MAX, "agent name");
    if (e == TQ_OK && create) e = check_room(c, &s->agents, 1, "agents");
    if (e != TQ_OK) return e;
    if (in->set_presence && (unsigned)in->presence > TQ_PRESENCE_ONLINE) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "presence");
    }
    uint32_t id = create ? tq_st_slab_new(&s->agents) : (uint32_t)in->agent_id;
    struct tq_agent *a = st_agent(s, id);
    if (create) {
        a->tenant = c->tenant_id;
        id_list_push(&c->tn->agent_ids, &c->tn->agent_n, &c->tn->agent_cap, id);
    }
    if (in->name.len > 0) a->name = tq_st_strdup(s, in->name.ptr, in->name.len);
    if (in->set_presence) a->presence = (uint8_t)in->presence;
    if (in->set_capacity) memcpy(a->capacity, in->capacity, sizeof(a->capacity));
    tenant_mark_dirty(s, c->tenant_id);
    c->res->agent_id = id;
    ev_config(c, 0, id);
    return TQ_OK;
}

/* ==== commands: customers ================================================================ */

static enum tq_err cmd_customer_create(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.customer_create) *in = &c->cmd->u.customer_create;
    enum tq_err e = check_str(c, in->name, 0, TQ_NAME_BYTES_MAX, "customer name");
    if (e == TQ_OK) e = check_str(c, in->language, 0, TQ_NAME_BYTES_MAX, "language");
    if (e == TQ_OK) e = check_bytes(c, in->external_id, 0, TQ_EXTERNAL_ID_BYTES_MAX, "external_id");
    if (e == TQ_OK) e = check_room(c, &s->customers, 1, "customers");
    if (e == TQ_OK) e = check_identity_room(c);
    if (e != TQ_OK) return e;
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "channel");
    char buf[TQ_EXTERNAL_ID_BYTES_MAX];
    const char *norm = normalise_ext(in->channel, in->external_id, buf);
    uint32_t len = in->external_id.len;
    uint64_t h = 0;
    if (in->external_id.len > 0) {
        if (identity_find(s, c->tenant_id, in->channel, norm, len, 0, &h) != 0) {
            return fail(c, TQ_ERR_ALREADY_EXISTS, "identity belongs to another customer");
        }
    }
    uint32_t id = customer_add(c, in->name, in->language);
    if (in->external_id.len > 0) identity_add(s, c->tenant_id, id, in->channel, norm, len, h);
    c->res->customer_id = id;
    c->res->customer_created = true;
    return TQ_OK;
}

static enum tq_err cmd_customer_link(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.customer_link) *in = &c->cmd->u.customer_link;
    struct tq_customer *cu = tq_st_customer_get(s, c->tenant_id, in->customer_id);
    if (cu == NULL) return fail(c, TQ_ERR_NOT_FOUND, "customer");
    if (cu->merged_into != 0) return fail(c, TQ_ERR_FAILED_PRECONDITION, "customer was merged");
    if (cu->erased) return fail(c, TQ_ERR_FAILED_PRECONDITION, "customer was erased");
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "channel");
    enum tq_err e = check_bytes(c, in->external_id, 1, TQ_EXTERNAL_ID_BYTES_MAX, "external_id");
    if (e == TQ_OK) e = check_identity_room(c);
    if (e != TQ_OK) return e;
    char buf[TQ_EXTERNAL_ID_BYTES_MAX];
    const char *norm = normalise_ext(in->channel, in->external_id, buf);
    uint32_t len = in->external_id.len;
    uint64_t h;
    if (identity_find(s, c->tenant_id, in->channel, norm, len, 0, &h) != 0) {
        return fail(c, TQ_ERR_ALREADY_EXISTS, "identity already linked");
    }
    identity_add(s, c->tenant_id, (uint32_t)in->customer_id, in->channel, norm, len, h);
    c->res->customer_id = in->customer_id;
    struct tq_event ev = ev_make(c, TQ_EVENT_CONFIG_CHANGED, c->tenant_id, c->now);
    ev.customer_id = in->customer_id;
    ev.old_value = ev.new_value = TQ_CMD_CUSTOMER_LINK;
    ev_send(c, &ev);
    return TQ_OK;
}

/* Identity and message chains are intrusive singly linked lists in ascending id order (the
 * order things were added). Merging two of them keeps that order; next_of names the link. */
typedef uint32_t *(*chain_next_fn)(const struct tq_state *s, uint32_t id);

static uint32_t *identity_next(const struct tq_state *s, uint32_t id) {
    return &st_identity(s, id)->next;
}

static uint32_t *message_next(const struct tq_state *s, uint32_t id) {
    return &st_message(s, id)->next;
}

/* Returns the head of the merged chain of a and b (either may be 0 = empty), both sorted by id
 * (ascending: identities; descending: a ticket's messages, newest first); *tail_out gets its
 * last element (0 if both were empty). */
static uint32_t chain_merge(const struct tq_state *s, uint32_t a, uint32_t b, chain_next_fn next_of,
                            bool descending, uint32_t *tail_out) {
    uint32_t head = 0, tail = 0;
    while (a != 0 || b != 0) {
        uint32_t take;
        if (b == 0 || (a != 0 && (descending ? a > b : a < b))) {
            take = a;
            a = *next_of(s, a);
        } else {
            TQ_ASSERT(a != b);
            take = b;
            b = *next_of(s, b);
        }
        if (tail == 0) {
            head = take;
        } else {
            TQ_ASSERT(descending ? take < tail : take > tail);
            *next_of(s, tail) = take;
        }
        tail = take;
    }
    if (tail != 0) *next_of(s, tail) = 0;
    *tail_out = tail;
    return head;
}

static enum tq_err cmd_customer_merge(struct ctx *c) {
    struct tq_state *s = c->s;
    uint64_t sid = c->cmd->u.customer_merge.survivor_id, mid = c->cmd->u.customer_merge.merged_id;
    struct tq_customer *sv = tq_st_customer_get(s, c->tenant_id, sid);
    struct tq_customer *mg = tq_st_customer_get(s, c->tenant_id, mid);
    if (sv == NULL || mg == NULL) return fail(c, TQ_ERR_NOT_FOUND, "customer");
    if (sid == mid) return fail(c, TQ_ERR_INVALID_ARGUMENT, "a customer cannot merge into itself");
    if (sv->merged_into != 0 || mg->merged_into != 0) {
        return fail(c, TQ_ERR_FAILED_PRECONDITION, "customer was merged");
    }
    if (sv->erased || mg->erased) return fail(c, TQ_ERR_FAILED_PRECONDITION, "customer was erased");
    /* identities: merge the two ascending chains */
    for (uint32_t p = mg->ident_head; p != 0; p = st_identity(s, p)->next)
        st_identity(s, p)->customer = (uint32_t)sid;
    uint32_t tail = 0;
    uint32_t head = chain_merge(s, sv->ident_head, mg->ident_head, identity_next, false, &tail);
    sv->ident_head = head;
    sv->ident_count += mg->ident_count;
    mg->ident_head = 0;
    mg->ident_count = 0;
    /* tickets: merge the two descending chains, re-pointing the merged one's tickets (in merge
     * order, which fixes the order of their events) */
    uint32_t a = sv->ticket_head, b = mg->ticket_head;
    head = tail = 0;
    while (a != 0 || b != 0) {
        uint32_t take;
        if (b == 0 || (a != 0 && a > b)) {
            take = a;
            a = st_ticket(s, a)->customer_next;
        } else {
            take = b;
            b = st_ticket(s, b)->customer_next;
            st_ticket(s, take)->customer = (uint32_t)sid;
            ev_ticket(c, take, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_CUSTOMER, (int64_t)mid,
                      (int64_t)sid, c->now);
        }
        if (tail == 0) {
            head = take;
        } else {
            st_ticket(s, tail)->customer_next = take;
        }
        tail = take;
    }
    if (tail != 0) st_ticket(s, tail)->customer_next = 0;
    sv->ticket_head = head;
    mg->ticket_head = 0;
    mg->merged_into = (uint32_t)sid;
    c->res->customer_id = sid;
    struct tq_event ev = ev_make(c, TQ_EVENT_CUSTOMER_MERGED, c->tenant_id, c->now);
    ev.customer_id = mid;
    ev.old_value = (int64_t)mid;
    ev.new_value = (int64_t)sid;
    ev_send(c, &ev);
    return TQ_OK;
}

/* Overwrites bytes of the string store in place (they belong to one entity: names and
 * subjects are never shared; the empty string is a literal, hence the length test). */
static void scrub(const char *ptr, uint32_t len) {
    if (len > 0) memset((char *)(uintptr_t)ptr, 0, len);
}

/* Right to erasure. Validation: the customer exists in the tenant and is not erased yet. Then
 * every identity leaves the lookup table and its chain (bytes zeroed, hash 0: the erased form
 * of struct tq_identity), the name and language are zeroed and emptied, and the subjects of
 * the customer's tickets are zeroed and emptied. Tickets, messages, statuses, SLA clocks and
 * queues are untouched (nothing is routed differently), so no other event than
 * CUSTOMER_ERASED is emitted. A merged customer can be erased too (its tickets and identities
 * already moved to the survivor: only its own name and language go). */
static enum tq_err cmd_customer_erase(struct ctx *c) {
    struct tq_state *s = c->s;
    uint64_t cid = c->cmd->u.customer_erase.customer_id;
    struct tq_customer *cu = tq_st_customer_get(s, c->tenant_id, cid);
    if (cu == NULL) return fail(c, TQ_ERR_NOT_FOUND, "customer");
    if (cu->erased) return fail(c, TQ_ERR_FAILED_PRECONDITION, "customer already erased");
    /* ---- mutate ---- */
    for (uint32_t x = cu->ident_head; x != 0;) {
        struct tq_identity *id = st_identity(s, x);
        uint32_t next = id->next;
        TQ_ASSERT(id->ext_len > 0 && id->customer == cid);
        tq_st_idtab_remove(s, &s->ident_index, id->hash, x, identity_hash_of);
        scrub(ident_ext(id), id->ext_len);
        memset(&id->ext, 0, sizeof(id->ext));
        id->ext_len = 0;
        id->hash = 0;
        id->next = 0;
        x = next;
    }
    cu->ident_head = 0;
    cu->ident_count = 0;
    scrub(cu->name.ptr, cu->name.len);
    scrub(cu->language.ptr, cu->language.len);
    cu->name = cu->language = (struct tq_str){"", 0};
    for (uint32_t t = cu->ticket_head; t != 0; t = st_ticket(s, t)->customer_next) {
        struct tq_ticket *tk = st_ticket(s, t);
        if (tk->subject != NULL) scrub(tk->subject, tk->subject_len);
        tk->subject = NULL;
        tk->subject_len = 0;
    }
    cu->erased = 1;
    c->res->customer_id = cid;
    struct tq_event ev = ev_make(c, TQ_EVENT_CUSTOMER_ERASED, c->tenant_id, c->now);
    ev.customer_id = cid;
    ev_send(c, &ev);
    return TQ_OK;
}

/* ==== commands: messages ================================================================== */

/* A ticket's messages are chained newest first (message.next is the previous, older one): an
 * append writes only the new message, which was just allocated (a hot line), and the ticket.
 * Chained oldest first, it wrote the previous tail's next link: one random line per inbound
 * message and reply. Readers walk from msg_tail (newest); msg_head is the oldest. */
static void message_append(struct tq_state *s, uint32_t tid, uint32_t mid) {
    struct tq_ticket *t = st_ticket(s, tid);
    TQ_ASSERT(mid > t->msg_tail); /* ids only grow: the chain stays in descending id order */
    st_message(s, mid)->next = t->msg_tail;
    if (t->msg_head == 0) t->msg_head = mid;
    t->msg_tail = mid;
    t->msg_count++;
}

static uint32_t message_add(struct ctx *c, uint32_t tid, unsigned dir, unsigned channel,
                            unsigned author, unsigned delivery, uint64_t ext_hash,
                            uint64_t ext_slot) /* message_find's empty slot, or UINT64_MAX */
{
    struct tq_state *s = c->s;
    uint32_t mid = tq_st_slab_new(&s->messages);
    struct tq_message *m = st_message(s, mid);
    m->ext_hash = ext_hash;
    m->packed = msg_pack(c->lsn, dir, channel, author, delivery, 0);
    m->ticket = tid;
    m->next = 0;
    message_append(s, tid, mid);
    if (ext_hash != 0) message_index_add(s, ext_hash, mid, ext_slot);
    struct tq_tenant *tn = st_tenant(s, st_ticket(s, tid)->tenant);
    tn->message_count++;
    tn->by_channel[channel]++;
    hourly_add(tn, c->now, channel);
    if (!ev_wanted(c)) return mid;
    struct tq_event e = ev_make(c, TQ_EVENT_MESSAGE_ADDED, tn == c->tn ? c->tenant_id : 0, c->now);
    const struct tq_ticket *t = st_ticket(s, tid);
    e.tenant_id = t->tenant;
    e.ticket_id = tid;
    e.message_id = mid;
    e.customer_id = t->customer;
    e.queue_id = t->queue;
    e.agent_id = t->assignee;
    e.old_value = dir;
    e.new_value = channel;
    ev_send(c, &e);
    return mid;
}

/* Finds the ticket an inbound message of customer cid in queue qid goes to: an unclosed one
 * in that queue (appended to), else the newest closed one (a follow-up links to it). */
static void ingest_pick(const struct tq_state *s, uint32_t cid, uint32_t qid, uint32_t *open_out,
                        uint32_t *closed_out) {
    *open_out = 0;
    *closed_out = 0;
    if (cid == 0) return;
    for (uint32_t t = st_customer(s, cid)->ticket_head; t != 0;
         t = st_ticket(s, t)->customer_next) {
        const struct tq_ticket *tk = st_ticket(s, t);
        if (tk->queue != qid || tk_merged_into(tk) != 0) continue;
        if (tk->status != TQ_STATUS_CLOSED) {
            *open_out = t;
            return;
        }
        if (*closed_out == 0) *closed_out = t;
    }
}

/* Whether an inbound message on channel ch appended to the existing ticket t changes anything
 * ticket_sync() derives (queue membership and key, load, due item, SLA index key): a reopen,
 * the start of the oldest unanswered message or of the next-reply clock, or a new reply window.
 * When none of these happen, only the message chain and updated_ms change, which no index reads,
 * so apply skips ticket_sync and the prefetch stage skips the entries it would read (the
 * deadline entry and the SLA index node: random lines). Pure: the prefetch stage calls it on
 * the ticket as it stands, apply before mutating it. */
static bool ingest_touches_index(const struct tq_tenant *tn, const struct tq_ticket *t,
                                 unsigned ch) {
    if (t->status == TQ_STATUS_PENDING || t->status == TQ_STATUS_ON_HOLD ||
        t->status == TQ_STATUS_SOLVED) {
        return true; /* reopened */
    }
    if (t->unanswered_ms == 0) return true;
    if (t->policy != 0 && t->sla_state[TQ_SLA_FIRST_REPLY] != TQ_SLA_RUNNING &&
        t->sla_state[TQ_SLA_NEXT_REPLY] != TQ_SLA_RUNNING) {
        return true; /* the next-reply clock starts */
    }
    return t->origin < TQ_CHANNEL_COUNT && tn->reply_window_ms[t->origin] != 0 && ch == t->origin;
}

static uint32_t ticket_create(struct ctx *c, uint32_t cid, uint32_t qid, uint32_t follow_up_of) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.ingest) *in = &c->cmd->u.ingest;
    struct tq_tenant *tn = c->tn;
    uint32_t tid = tq_st_slab_new(&s->tickets);
    tq_st_tkidx_new(s, tid);
    struct tq_ticket *t = st_ticket(s, tid);
    t->tenant = c->tenant_id;
    t->number = tn->ticket_number_next++;
    t->customer = cid;
    t->queue = qid;
    t->status = TQ_STATUS_NEW;
    t->priority = (uint8_t)in->priority;
    t->origin = (uint8_t)in->channel;
    t->created_ms = t->updated_ms = c->now;
    t->unanswered_ms = c->now;
    struct tq_str subj = tq_st_strdup(s, in->subject.ptr, in->subject.len);
    t->subject = subj.ptr;
    t->subject_len = (uint16_t)subj.len;
    /* tags: inherited from the closed ticket first, then the message's, up to the limit */
    struct extras_draft d;
    d.tag_count = d.field_count = 0;
    d.wake_at_ms = 0;
    d.merged_into = 0;
    d.follow_up_of = follow_up_of;
    if (follow_up_of != 0) {
        const struct tq_ticket *prev = st_ticket(s, follow_up_of);
        if (prev->extras != NULL) {
            d.tag_count = prev->extras->tag_count;
            memcpy(d.tags, extras_tags(prev->extras), d.tag_count * sizeof(uint32_t));
        }
    }
    for (uint32_t i = 0; i < in->tag_count; i++) {
        if (in->tags[i].len > 0) (void)draft_add_tag(s, &d, in->tags[i]);
    }
    draft_store(t, &d);
    /* customer chain: newest first */
    struct tq_customer *cu = st_customer(s, cid);
    t->customer_next = cu->ticket_head;
    cu->ticket_head = tid;
    tn->ticket_count++;
    tn->by_status[TQ_STATUS_NEW]++;
    /* SLA */
    t->policy = policy_select(s, tn, t);
    if (t->policy != 0) {
        t->sla_state[TQ_SLA_FIRST_REPLY] = TQ_SLA_RUNNING;
        t->sla_state[TQ_SLA_REQUESTER_WAIT] = TQ_SLA_RUNNING;
        t->sla_state[TQ_SLA_AGENT_WORK] = TQ_SLA_RUNNING;
        t->wait.mark_ms = t->work.mark_ms = c->now;
        for (int m = 0; m < TQ_SLA_REPLY_WINDOW; m++)
            clock_rederive(s, t, (enum tq_sla_metric)m);
    }
    c->res->ticket_created = true;
    ev_ticket(c, tid, TQ_EVENT_TICKET_CREATED, TQ_FIELD_NONE, follow_up_of, tid, c->now);
    return tid;
}

static enum tq_err cmd_ingest(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.ingest) *in = &c->cmd->u.ingest;
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "channel");
    if ((unsigned)in->priority >= TQ_PRIORITY_COUNT) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "priority");
    }
    enum tq_err e = check_bytes(c, in->from_external_id, 1, TQ_EXTERNAL_ID_BYTES_MAX, "from");
    if (e == TQ_OK) e = check_str(c, in->customer_name, 0, TQ_NAME_BYTES_MAX, "customer_name");
    if (e == TQ_OK) e = check_str(c, in->language, 0, TQ_NAME_BYTES_MAX, "language");
    if (e == TQ_OK) {
        e = check_bytes(c, in->message_external_id, 0, TQ_EXTERNAL_ID_BYTES_MAX, "message id");
    }
    if (e == TQ_OK) e = check_str(c, in->subject, 0, TQ_NAME_BYTES_MAX, "subject");
    if (e == TQ_OK) e = check_str(c, in->body, 0, s->body_bytes_max, "body");
    if (e == TQ_OK) e = check_attachments(c, in->attachment_count, in->attachments);
    if (e != TQ_OK) return e;
    if (in->tag_count > TQ_TAGS_PER_TICKET_MAX)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "tags > 32");
    for (uint32_t i = 0; i < in->tag_count; i++) {
        e = check_str(c, in->tags[i], 1, TQ_NAME_BYTES_MAX, "tag");
        if (e != TQ_OK) return e;
    }
    uint64_t qid = in->queue_id != 0 ? in->queue_id : c->tn->default_queue[in->channel];
    if (qid == 0) return fail(c, TQ_ERR_FAILED_PRECONDITION, "no queue for this channel");
    if (tq_st_queue_get(s, c->tenant_id, qid) == NULL) return fail(c, TQ_ERR_NOT_FOUND, "queue");
    /* Both lookups below start with a cache miss in a big table: hash both keys first and
     * prefetch both slots so the two misses overlap. */
    char norm_buf[TQ_EXTERNAL_ID_BYTES_MAX];
    uint32_t nlen = in->from_external_id.len;
    const char *norm =
        c->hint != NULL && c->hint->ident_norm_len != 0 && c->hint->ident_norm_len == nlen
            ? c->hint->ident_norm /* stage 0 lower-cased it */
            : normalise_ext(in->channel, in->from_external_id, norm_buf);
    TQ_DEBUG_ASSERT(
        memcmp(norm, normalise_ext(in->channel, in->from_external_id, norm_buf), nlen) == 0);
    uint64_t ih_pre = c->hint != NULL ? c->hint->ident_hash : 0; /* stage 0 hashed the keys */
    if (ih_pre == 0) ih_pre = tq_st_identity_hash(c->tenant_id, in->channel, norm, nlen);
    TQ_DEBUG_ASSERT(ih_pre == tq_st_identity_hash(c->tenant_id, in->channel, norm, nlen));
    __builtin_prefetch(&s->ident_index.slots[ih_pre & s->ident_index.mask]);
    /* idempotency */
    uint64_t mh = 0, mh_slot = UINT64_MAX;
    if (in->message_external_id.len > 0) {
        mh = c->hint != NULL ? c->hint->msg_hash : 0;
        if (mh == 0) {
            mh = tq_st_message_hash(c->tenant_id, in->channel, in->message_external_id.ptr,
                                    in->message_external_id.len);
        }
        TQ_DEBUG_ASSERT(mh == tq_st_message_hash(c->tenant_id, in->channel,
                                                 in->message_external_id.ptr,
                                                 in->message_external_id.len));
        __builtin_prefetch(&s->msg_index.slots[msg_home(&s->msg_index, mh)]);
        uint32_t dup = message_find(s, c->tenant_id, in->channel, mh, &mh_slot);
        if (dup != 0) {
            const struct tq_ticket *t = st_ticket(s, st_message(s, dup)->ticket);
            c->res->duplicate = true;
            c->res->message_id = dup;
            c->res->ticket_id = st_message(s, dup)->ticket;
            c->res->ticket_number = t->number;
            c->res->customer_id = t->customer;
            return TQ_OK;
        }
    }
    e = s->messages.next_id > TQ_MESSAGES_MAX
            ? fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "messages: 2^28 - 1 per state")
            : TQ_OK;
    if (e == TQ_OK) e = check_room(c, &s->tickets, 1, "tickets");
    if (e == TQ_OK) e = check_room(c, &s->customers, 1, "customers");
    if (e == TQ_OK) e = check_identity_room(c);
    if (e != TQ_OK) return e;
    if (c->lsn > TQ_LSN_MAX) return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "lsn beyond 48 bits");
    uint64_t ih;
    uint32_t ident = identity_find(s, c->tenant_id, in->channel, norm, nlen, ih_pre, &ih);
    TQ_ASSERT(ih == ih_pre);
    uint32_t cid = ident != 0 ? st_identity(s, ident)->customer : 0;
    uint32_t open_tid, closed_tid;
    ingest_pick(s, cid, (uint32_t)qid, &open_tid, &closed_tid);
    /* ---- mutate ---- */
    if (cid == 0) {
        cid = customer_add(c, in->customer_name, in->language);
        identity_add(s, c->tenant_id, cid, in->channel, norm, nlen, ih);
        c->res->customer_created = true;
    }
    uint32_t tid = open_tid;
    /* an existing ticket whose derived entries this message leaves alone (the common case: a
     * customer writing again before the agent answered) needs no ticket_sync */
    bool sync = open_tid == 0 || ingest_touches_index(c->tn, st_ticket(s, open_tid), in->channel);
    if (tid == 0) tid = ticket_create(c, cid, (uint32_t)qid, closed_tid);
    uint32_t mid = message_add(c, tid, TQ_DIRECTION_INBOUND, in->channel, TQ_AUTHOR_CUSTOMER,
                               TQ_DELIVERY_NONE, mh, mh_slot);
    struct tq_ticket *t = st_ticket(s, tid);
    t->updated_ms = c->now;
    if (open_tid != 0) {
        if (t->status == TQ_STATUS_PENDING || t->status == TQ_STATUS_ON_HOLD ||
            t->status == TQ_STATUS_SOLVED) {
            ticket_set_status(c, tid, TQ_STATUS_OPEN, c->now);
        }
        if (t->unanswered_ms == 0) t->unanswered_ms = c->now;
        if (t->policy != 0 && t->sla_state[TQ_SLA_FIRST_REPLY] != TQ_SLA_RUNNING &&
            t->sla_state[TQ_SLA_NEXT_REPLY] != TQ_SLA_RUNNING) {
            t->sla_state[TQ_SLA_NEXT_REPLY] = TQ_SLA_RUNNING;
            t->sla_warned &= (uint8_t) ~(1u << TQ_SLA_NEXT_REPLY);
            clock_rederive(s, t, TQ_SLA_NEXT_REPLY);
        }
    }
    uint64_t window = c->tn->reply_window_ms[t->origin];
    if (window != 0 && in->channel == t->origin) {
        t->sla_state[TQ_SLA_REPLY_WINDOW] = TQ_SLA_RUNNING;
        t->sla_warned &= (uint8_t) ~(1u << TQ_SLA_REPLY_WINDOW);
        t->window_deadline_ms = c->now + window;
    }
    if (sync) ticket_sync(s, tid, c->now);
    c->res->customer_id = cid;
    c->res->ticket_id = tid;
    c->res->ticket_number = t->number;
    c->res->message_id = mid;
    return TQ_OK;
}

static enum tq_err check_ticket_mutable(struct ctx *c, const struct tq_ticket *t) {
    if (t == NULL) return fail(c, TQ_ERR_NOT_FOUND, "ticket");
    if (tk_merged_into(t) != 0) return fail(c, TQ_ERR_FAILED_PRECONDITION, "ticket was merged");
    if (t->status == TQ_STATUS_CLOSED) return fail(c, TQ_ERR_FAILED_PRECONDITION, "ticket closed");
    return TQ_OK;
}

static void outbox_push_tail(struct tq_state *s, struct tq_oblist *l, uint32_t e) {
    struct tq_obentry *x = st_obentry(s, e);
    x->prev = l->tail;
    x->next = 0;
    if (l->tail != 0) {
        st_obentry(s, l->tail)->next = e;
    } else {
        l->head = e;
    }
    l->tail = e;
    l->count++;
}

static void outbox_push_head(struct tq_state *s, struct tq_oblist *l, uint32_t e) {
    struct tq_obentry *x = st_obentry(s, e);
    x->next = l->head;
    x->prev = 0;
    if (l->head != 0) {
        st_obentry(s, l->head)->prev = e;
    } else {
        l->tail = e;
    }
    l->head = e;
    l->count++;
}

static void outbox_unlink(struct tq_state *s, struct tq_oblist *l, uint32_t e) {
    struct tq_obentry *x = st_obentry(s, e);
    if (x->prev != 0) {
        st_obentry(s, x->prev)->next = x->next;
    } else {
        l->head = x->next;
    }
    if (x->next != 0) {
        st_obentry(s, x->next)->prev = x->prev;
    } else {
        l->tail = x->prev;
    }
    x->prev = x->next = 0;
    TQ_ASSERT(l->count > 0);
    l->count--;
}

/* Inserts a leased entry keeping the list sorted by (lease_until_ms, insertion): O(1) in the
 * usual case (leases of one gateway end in take order), a short walk otherwise. Expiry then
 * pops from the head only. */
static void outbox_insert_leased(struct tq_state *s, struct tq_oblist *l, uint32_t e) {
    struct tq_obentry *x = st_obentry(s, e);
    uint32_t after = l->tail;
    while (after != 0 && st_obentry(s, after)->lease_until_ms > x->lease_until_ms) {
        after = st_obentry(s, after)->prev;
    }
    if (after == l->tail) {
        outbox_push_tail(s, l, e);
        return;
    }
    if (after == 0) {
        outbox_push_head(s, l, e);
        return;
    }
    struct tq_obentry *a = st_obentry(s, after);
    x->prev = after;
    x->next = a->next;
    st_obentry(s, a->next)->prev = e;
    a->next = e;
    l->count++;
}

static struct tq_oblist *entry_list(struct tq_state *s, const struct tq_obentry *x) {
    struct tq_tenant *tn = st_tenant(s, x->tenant);
    return x->leased ? &tn->ob_leased[x->channel] : &tn->ob_avail[x->channel];
}

/* Adds message mid to the tail of its (tenant, channel) outbox. */
void tq_st_outbox_add(struct tq_state *s, uint32_t tenant, uint32_t mid, unsigned channel,
                      uint64_t lease_until) {
    uint32_t e;
    if (s->ob_free != 0) {
        e = s->ob_free;
        s->ob_free = st_obentry(s, e)->next;
    } else {
        e = tq_st_slab_new(&s->obentries);
    }
    struct tq_obentry *x = st_obentry(s, e);
    memset(x, 0, sizeof(*x));
    x->message = mid;
    x->tenant = tenant;
    x->channel = (uint8_t)channel;
    x->attempts = (uint8_t)msg_attempts(st_message(s, mid));
    x->leased = lease_until != 0;
    x->lease_until_ms = lease_until;
    if (x->leased) {
        outbox_insert_leased(s, entry_list(s, x), e);
    } else {
        outbox_push_tail(s, entry_list(s, x), e);
    }
    tq_st_u32map_put(&s->ob_by_message, mid, e);
    st_tenant(s, tenant)->outbox_pending++;
}

unsigned tq_st_message_attempts(const struct tq_state *s, uint32_t mid) {
    const struct tq_message *m = st_message(s, mid);
    if (msg_dir(m) == TQ_DIRECTION_OUTBOUND && msg_delivery(m) == TQ_DELIVERY_QUEUED) {
        uint32_t e = tq_st_u32map_get(&s->ob_by_message, mid);
        if (e != 0) return st_obentry(s, e)->attempts;
    }
    return msg_attempts(m);
}

/* Removes entry e; its attempts count goes back into its message (struct tq_obentry). */
static void outbox_remove(struct tq_state *s, uint32_t e) {
    struct tq_obentry *x = st_obentry(s, e);
    struct tq_message *m = st_message(s, x->message);
    m->packed = msg_with_attempts(m->packed, x->attempts);
    outbox_unlink(s, entry_list(s, x), e);
    tq_st_u32map_del(&s->ob_by_message, x->message);
    struct tq_tenant *tn = st_tenant(s, x->tenant);
    TQ_ASSERT(tn->outbox_pending > 0);
    tn->outbox_pending--;
    memset(x, 0, sizeof(*x));
    x->next = s->ob_free;
    s->ob_free = e;
}

static void message_set_delivery(struct ctx *c, uint32_t mid, enum tq_delivery to, uint64_t at) {
    struct tq_message *m = st_message(c->s, mid);
    unsigned from = msg_delivery(m);
    m->packed = msg_pack(msg_lsn(m), msg_dir(m), msg_chan(m), msg_author(m), to, msg_attempts(m));
    if (!ev_wanted(c)) return;
    const struct tq_ticket *t = st_ticket(c->s, m->ticket);
    struct tq_event e = ev_make(c, TQ_EVENT_DELIVERY_STATUS, t->tenant, at);
    e.ticket_id = m->ticket;
    e.message_id = mid;
    e.customer_id = t->customer;
    e.old_value = from;
    e.new_value = to;
    ev_send(c, &e);
}

static void outbox_fail_exhausted(struct ctx *c, uint32_t e, uint64_t at) {
    uint32_t mid = st_obentry(c->s, e)->message;
    outbox_remove(c->s, e);
    message_set_delivery(c, mid, TQ_DELIVERY_FAILED, at);
    if (!ev_wanted(c)) return; /* the ticket is read only for the event (a random line) */
    const struct tq_message *m = st_message(c->s, mid);
    const struct tq_ticket *t = st_ticket(c->s, m->ticket);
    struct tq_event ev = ev_make(c, TQ_EVENT_OUTBOX_FAILED, t->tenant, at);
    ev.ticket_id = m->ticket;
    ev.message_id = mid;
    ev.customer_id = t->customer;
    ev.new_value = msg_attempts(m);
    ev_send(c, &ev);
}

/* Expired leases of one (tenant, channel) go back to the front of the available list in their
 * expiry order, or fail when their attempts are used up. The leased list is sorted by expiry,
 * so this costs O(expired). */
static void outbox_expire(struct ctx *c, uint32_t tenant, unsigned ch, uint64_t now) {
    struct tq_state *s = c->s;
    struct tq_tenant *tn = st_tenant(s, tenant);
    uint32_t first_back = 0, last_back = 0;
    while (tn->ob_leased[ch].head != 0) {
        uint32_t e = tn->ob_leased[ch].head;
        struct tq_obentry *x = st_obentry(s, e);
        if (x->lease_until_ms > now) break;
        if (x->ahead != 0 && x->ahead < s->obentries.next_id) {
            __builtin_prefetch(st_obentry(s, x->ahead), 1); /* (the hint above) */
        }
        /* Two places on (fetched by the hint a few entries ago): an expired entry with its
         * attempts used up will write its message and delete its map slot, two random lines;
         * start them now. */
        uint32_t y = x->next != 0 ? st_obentry(s, x->next)->next : 0;
        if (y != 0) {
            const struct tq_obentry *z = st_obentry(s, y);
            if (z->lease_until_ms <= now && z->attempts >= tn->attempts_max) {
                __builtin_prefetch(st_message(s, z->message), 1);
                tq_st_u32map_prefetch(&s->ob_by_message, z->message);
            }
        }
        if (x->attempts >= tn->attempts_max) { /* the entry's copy: no message read */
            outbox_fail_exhausted(c, e, x->lease_until_ms);
            continue;
        }
        outbox_unlink(s, &tn->ob_leased[ch], e);
        x->leased = 0;
        x->lease_until_ms = 0;
        /* splice after the previously returned one, so they keep their order at the front */
        if (last_back == 0) {
            outbox_push_head(s, &tn->ob_avail[ch], e);
            first_back = e;
        } else {
            struct tq_obentry *p = st_obentry(s, last_back);
            x->prev = last_back;
            x->next = p->next;
            if (p->next != 0) {
                st_obentry(s, p->next)->prev = e;
            } else {
                tn->ob_avail[ch].tail = e;
            }
            p->next = e;
            tn->ob_avail[ch].count++;
        }
        last_back = e;
    }
    (void)first_back;
}

static enum tq_err cmd_reply(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.reply) *in = &c->cmd->u.reply;
    struct tq_ticket *t = tq_st_ticket_get(s, c->tenant_id, in->ticket_id);
    enum tq_err e = check_ticket_mutable(c, t);
    if (e != TQ_OK) return e;
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "channel");
    e = check_str(c, in->body, 0, s->body_bytes_max, "body");
    if (e == TQ_OK) e = check_attachments(c, in->attachment_count, in->attachments);
    if (e == TQ_OK && s->messages.next_id > TQ_MESSAGES_MAX) {
        e = fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "messages: 2^28 - 1 per state");
    }
    if (e == TQ_OK) e = check_room(c, &s->obentries, 1, "outbox");
    if (e != TQ_OK) return e;
    if (c->lsn > TQ_LSN_MAX) return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "lsn beyond 48 bits");
    bool by_agent = c->cmd->actor_agent_id != 0 && !in->automated;
    enum tq_ticket_status to = (enum tq_ticket_status)t->status;
    if (in->set_status) {
        if ((unsigned)in->status >= TQ_STATUS_COUNT) {
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "status");
        }
        if (in->status != t->status && !tq_state_status_move_allowed(t->status, in->status)) {
            return tq_error_set(c->error, TQ_ERR_FAILED_PRECONDITION, "status move %s -> %s",
                                tq_status_name(t->status), tq_status_name(in->status));
        }
        to = in->status;
    } else if (by_agent && !in->internal_note && t->status == TQ_STATUS_NEW) {
        to = TQ_STATUS_OPEN; /* an agent's public reply opens a new ticket */
    }
    /* ---- mutate ---- */
    uint32_t tid = (uint32_t)in->ticket_id;
    unsigned dir = in->internal_note ? TQ_DIRECTION_NOTE : TQ_DIRECTION_OUTBOUND;
    unsigned author = by_agent ? TQ_AUTHOR_AGENT : TQ_AUTHOR_AUTOMATION;
    unsigned delivery = in->internal_note ? TQ_DELIVERY_NONE : TQ_DELIVERY_QUEUED;
    if (!in->internal_note) {
        /* the outbox entry is added last (nothing in between reads the outbox), so these two
         * random lines (the map slot of the message id about to be handed out, and the list's
         * tail entry that gets linked to the new one) arrive while the clocks are worked */
        tq_st_u32map_prefetch(&s->ob_by_message, s->messages.next_id);
        uint32_t tail = c->tn->ob_avail[in->channel].tail;
        if (tail != 0) __builtin_prefetch(st_obentry(s, tail), 1);
    }
    uint32_t mid = message_add(c, tid, dir, in->channel, author, delivery, 0, UINT64_MAX);
    t->updated_ms = c->now;
    if (by_agent && t->assignee == c->cmd->actor_agent_id) t->routing_ms = c->now; /* acted */
    if (by_agent && !in->internal_note) {
        if (t->first_response_ms == 0) {
            t->first_response_ms = c->now;
            hist_add(&c->tn->first_response, c->now - t->created_ms);
        }
        clock_achieve(c, tid, TQ_SLA_FIRST_REPLY, c->now);
        clock_achieve(c, tid, TQ_SLA_NEXT_REPLY, c->now);
        t->unanswered_ms = 0;
    }
    if (to != t->status) ticket_set_status(c, tid, to, c->now);
    ticket_sync(s, tid, c->now);
    if (!in->internal_note) tq_st_outbox_add(s, c->tenant_id, mid, in->channel, 0);
    c->res->ticket_id = tid;
    c->res->ticket_number = t->number;
    c->res->message_id = mid;
    c->res->customer_id = t->customer;
    return TQ_OK;
}

/* ==== commands: tickets =================================================================== */

static enum tq_err cmd_ticket_update(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.ticket_update) *in = &c->cmd->u.ticket_update;
    struct tq_ticket *t = tq_st_ticket_get(s, c->tenant_id, in->ticket_id);
    enum tq_err e = check_ticket_mutable(c, t);
    if (e != TQ_OK) return e;
    uint32_t f = in->fields;
    if (f == 0 || f >= (TQ_UPDATE_WAKE_AT << 1)) return fail(c, TQ_ERR_INVALID_ARGUMENT, "fields");
    if ((f & TQ_UPDATE_STATUS) && in->status != t->status) {
        if ((unsigned)in->status >= TQ_STATUS_COUNT)
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "status");
        if (!tq_state_status_move_allowed(t->status, in->status)) {
            return tq_error_set(c->error, TQ_ERR_FAILED_PRECONDITION, "status move %s -> %s",
                                tq_status_name(t->status), tq_status_name(in->status));
        }
    }
    if ((f & TQ_UPDATE_PRIORITY) && (unsigned)in->priority >= TQ_PRIORITY_COUNT) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "priority");
    }
    if ((f & TQ_UPDATE_QUEUE) && tq_st_queue_get(s, c->tenant_id, in->queue_id) == NULL) {
        return fail(c, TQ_ERR_NOT_FOUND, "queue");
    }
    if ((f & TQ_UPDATE_ASSIGNEE) && in->assignee_id != 0 &&
        tq_st_agent_get(s, c->tenant_id, in->assignee_id) == NULL) {
        return fail(c, TQ_ERR_NOT_FOUND, "assignee");
    }
    if ((f & TQ_UPDATE_SUBJECT) &&
        (e = check_str(c, in->subject, 0, TQ_NAME_BYTES_MAX, "subject")) != TQ_OK) {
        return e;
    }
    if ((f & TQ_UPDATE_WAKE_AT) && !time_ok(in->wake_at_ms)) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "wake_at_ms");
    }
    /* Tags and fields: build the result in a draft; nothing is interned before validation. */
    struct extras_draft d;
    draft_load(t, &d);
    bool extras_change = (f & (TQ_UPDATE_TAGS_ADD | TQ_UPDATE_TAGS_REMOVE | TQ_UPDATE_FIELDS)) != 0;
    if (f & TQ_UPDATE_TAGS_ADD) {
        if (in->tags_add_count > TQ_TAGS_PER_TICKET_MAX) {
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "tags > 32");
        }
        uint32_t fresh = 0;
        for (uint32_t i = 0; i < in->tags_add_count; i++) {
            if ((e = check_str(c, in->tags_add[i], 1, TQ_NAME_BYTES_MAX, "tag")) != TQ_OK) return e;
            uint32_t id = tq_st_intern_find(s, in->tags_add[i]);
            bool dup_in_cmd = false;
            for (uint32_t j = 0; j < i; j++) {
                if (in->tags_add[j].len == in->tags_add[i].len &&
                    memcmp(in->tags_add[j].ptr, in->tags_add[i].ptr, in->tags_add[i].len) == 0) {
                    dup_in_cmd = true;
                }
            }
            if (!dup_in_cmd && (id == 0 || !draft_has_tag(&d, id))) fresh++;
        }
        if (d.tag_count + fresh > TQ_TAGS_PER_TICKET_MAX) {
            return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "a ticket has at most 32 tags");
        }
    }
    if (f & TQ_UPDATE_TAGS_REMOVE) {
        if (in->tags_remove_count > TQ_TAGS_PER_TICKET_MAX) {
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "tags > 32");
        }
        for (uint32_t i = 0; i < in->tags_remove_count; i++) {
            if ((e = check_str(c, in->tags_remove[i], 1, TQ_NAME_BYTES_MAX, "tag")) != TQ_OK) {
                return e;
            }
        }
    }
    if (f & TQ_UPDATE_FIELDS) {
        if (in->field_count > TQ_CUSTOM_FIELDS_PER_TICKET_MAX) {
            return fail(c, TQ_ERR_INVALID_ARGUMENT, "custom fields > 32");
        }
        uint32_t fresh = 0;
        for (uint32_t i = 0; i < in->field_count; i++) {
            const struct tq_custom_field *cf = &in->custom_fields[i];
            if ((e = check_str(c, cf->key, 1, TQ_NAME_BYTES_MAX, "field key")) != TQ_OK) return e;
            if ((unsigned)cf->type > TQ_FIELD_BOOL) return fail(c, TQ_ERR_INVALID_ARGUMENT, "type");
            if (cf->type == TQ_FIELD_STRING &&
                (e = check_str(c, cf->string_value, 0, FIELD_STRING_BYTES_MAX, "field value"))) {
                return e;
            }
            if (cf->type == TQ_FIELD_BOOL && cf->int_value != 0 && cf->int_value != 1) {
                return fail(c, TQ_ERR_INVALID_ARGUMENT, "bool field must be 0 or 1");
            }
            uint32_t key = tq_st_intern_find(s, cf->key);
            bool known = false;
            for (uint32_t j = 0; key != 0 && j < d.field_count; j++)
                known |= d.fields[j].key == key;
            for (uint32_t j = 0; j < i; j++) {
                known |= in->custom_fields[j].key.len == cf->key.len &&
                         memcmp(in->custom_fields[j].key.ptr, cf->key.ptr, cf->key.len) == 0;
            }
            if (!known) fresh++;
        }
        if (d.field_count + fresh > TQ_CUSTOM_FIELDS_PER_TICKET_MAX) {
            return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "a ticket has at most 32 custom fields");
        }
    }
    /* ---- mutate, in field order ---- */
    uint32_t tid = (uint32_t)in->ticket_id;
    t->updated_ms = c->now;
    if (c->cmd->actor_agent_id != 0 && t->assignee == c->cmd->actor_agent_id) {
        t->routing_ms = c->now; /* the assignee acted */
    }
    if ((f & TQ_UPDATE_STATUS) && in->status != t->status) {
        ticket_set_status(c, tid, in->status, c->now);
    }
    if ((f & TQ_UPDATE_PRIORITY) && in->priority != t->priority) {
        uint8_t old = t->priority;
        t->priority = (uint8_t)in->priority;
        for (int m = 0; m < TQ_SLA_REPLY_WINDOW; m++)
            clock_rederive(s, t, (enum tq_sla_metric)m);
        ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_PRIORITY, old, in->priority, c->now);
    }
    if (f & TQ_UPDATE_QUEUE) ticket_set_queue(c, tid, (uint32_t)in->queue_id, c->now);
    if (f & TQ_UPDATE_ASSIGNEE) {
        if (in->assignee_id != 0 && t->assignee != in->assignee_id) {
            const struct tq_agent *a = st_agent(s, (uint32_t)in->assignee_id);
            unsigned cls = tq_channel_class_of((enum tq_channel)t->origin);
            if (status_table[t->status].counts_load && !agent_has_room(a, cls)) {
                c->res->over_capacity = true;
            }
        }
        ticket_set_assignee(c, tid, (uint32_t)in->assignee_id, c->now);
    }
    if (extras_change) {
        uint32_t old_tags = d.tag_count;
        for (uint32_t i = 0; (f & TQ_UPDATE_TAGS_ADD) && i < in->tags_add_count; i++) {
            bool ok = draft_add_tag(s, &d, in->tags_add[i]);
            TQ_ASSERT(ok);
        }
        for (uint32_t i = 0; (f & TQ_UPDATE_TAGS_REMOVE) && i < in->tags_remove_count; i++) {
            uint32_t id = tq_st_intern_find(s, in->tags_remove[i]);
            for (uint32_t j = 0; id != 0 && j < d.tag_count; j++) {
                if (d.tags[j] == id) {
                    memmove(&d.tags[j], &d.tags[j + 1], (d.tag_count - j - 1) * sizeof(uint32_t));
                    d.tag_count--;
                    break;
                }
            }
        }
        for (uint32_t i = 0; (f & TQ_UPDATE_FIELDS) && i < in->field_count; i++) {
            const struct tq_custom_field *cf = &in->custom_fields[i];
            uint32_t key = tq_st_intern(s, cf->key);
            uint32_t j = 0;
            while (j < d.field_count && d.fields[j].key != key)
                j++;
            if (j == d.field_count) d.field_count++;
            struct tq_tag_field *tf = &d.fields[j];
            memset(tf, 0, sizeof(*tf));
            tf->key = key;
            tf->type = (uint8_t)cf->type;
            tf->int_value = cf->type == TQ_FIELD_STRING ? 0 : cf->int_value;
            tf->string_value = cf->type == TQ_FIELD_STRING
                                   ? tq_st_strdup(s, cf->string_value.ptr, cf->string_value.len)
                                   : (struct tq_str){"", 0};
        }
        /* the cold fields may have changed since the draft was loaded (a status move clears
         * wake_at): take them from the ticket as it is now */
        d.wake_at_ms = tk_wake_at(t);
        d.merged_into = tk_merged_into(t);
        d.follow_up_of = tk_follow_up_of(t);
        draft_store(t, &d);
        if (f & (TQ_UPDATE_TAGS_ADD | TQ_UPDATE_TAGS_REMOVE)) {
            ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_TAGS, old_tags, d.tag_count,
                      c->now);
        }
        if (f & TQ_UPDATE_FIELDS) {
            ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_CUSTOM, in->field_count,
                      d.field_count, c->now);
        }
    }
    if (f & TQ_UPDATE_SUBJECT) {
        struct tq_str subj = tq_st_strdup(s, in->subject.ptr, in->subject.len);
        t->subject = subj.ptr;
        t->subject_len = (uint16_t)subj.len;
        ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_SUBJECT, 0, 0, c->now);
    }
    if ((f & TQ_UPDATE_WAKE_AT) && in->wake_at_ms != tk_wake_at(t)) {
        ev_ticket(c, tid, TQ_EVENT_TICKET_UPDATED, TQ_FIELD_WAKE_AT, (int64_t)tk_wake_at(t),
                  (int64_t)in->wake_at_ms, c->now);
        tq_st_set_wake_at(t, in->wake_at_ms);
    }
    ticket_sync(s, tid, c->now);
    c->res->ticket_id = tid;
    c->res->ticket_number = t->number;
    return TQ_OK;
}

static enum tq_err check_actor_is(struct ctx *c, uint64_t agent) {
    if (c->cmd->actor_agent_id != 0 && c->cmd->actor_agent_id != agent) {
        return fail(c, TQ_ERR_PERMISSION_DENIED, "an agent may not act for another agent");
    }
    return TQ_OK;
}

static enum tq_err cmd_claim(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.claim) *in = &c->cmd->u.claim;
    struct tq_agent *a = tq_st_agent_get(s, c->tenant_id, in->agent_id);
    if (a == NULL) return fail(c, TQ_ERR_NOT_FOUND, "agent");
    enum tq_err e = check_actor_is(c, in->agent_id);
    if (e != TQ_OK) return e;
    if (in->queue_count > TQ_CLAIM_QUEUES_MAX)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "queues > 64");
    for (uint32_t i = 0; i < in->queue_count; i++) {
        if (tq_st_queue_get(s, c->tenant_id, in->queue_ids[i]) == NULL) {
            return fail(c, TQ_ERR_NOT_FOUND, "queue");
        }
    }
    if (!agent_has_room(a, 0) && !agent_has_room(a, 1)) {
        return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "agent at capacity");
    }
    uint32_t best = 0;
    uint32_t n = in->queue_count != 0 ? in->queue_count : c->tn->queue_n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t qid = in->queue_count != 0 ? (uint32_t)in->queue_ids[i] : c->tn->queue_ids[i];
        const struct tq_queue *q = st_queue(s, qid);
        for (unsigned cls = 0; cls < TQ_CHANNEL_CLASS_COUNT; cls++) {
            if (!agent_has_room(a, cls) || q->heap[cls].count == 0) continue;
            uint32_t top = q->heap[cls].ids[0];
            if (best == 0 || q_before(s, top, best)) best = top;
        }
    }
    if (best == 0) return fail(c, TQ_ERR_NOT_FOUND, "no ticket to claim");
    ticket_set_assignee(c, best, (uint32_t)in->agent_id, c->now);
    ticket_sync(s, best, c->now);
    c->res->ticket_id = best;
    c->res->ticket_number = st_ticket(s, best)->number;
    c->res->agent_id = in->agent_id;
    return TQ_OK;
}

static enum tq_err cmd_release(struct ctx *c) {
    struct tq_state *s = c->s;
    struct tq_ticket *t = tq_st_ticket_get(s, c->tenant_id, c->cmd->u.release.ticket_id);
    enum tq_err e = check_ticket_mutable(c, t);
    if (e != TQ_OK) return e;
    if (t->assignee == 0) return fail(c, TQ_ERR_FAILED_PRECONDITION, "ticket is not assigned");
    uint32_t tid = (uint32_t)c->cmd->u.release.ticket_id;
    ticket_set_assignee(c, tid, 0, c->now);
    ticket_sync(s, tid, c->now);
    c->res->ticket_id = tid;
    c->res->ticket_number = t->number;
    return TQ_OK;
}

static enum tq_err cmd_transfer(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.transfer) *in = &c->cmd->u.transfer;
    struct tq_ticket *t = tq_st_ticket_get(s, c->tenant_id, in->ticket_id);
    enum tq_err e = check_ticket_mutable(c, t);
    if (e != TQ_OK) return e;
    if (in->to_queue_id == 0 && in->to_agent_id == 0) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "transfer needs a queue or an agent");
    }
    if (in->to_queue_id != 0 && tq_st_queue_get(s, c->tenant_id, in->to_queue_id) == NULL) {
        return fail(c, TQ_ERR_NOT_FOUND, "queue");
    }
    const struct tq_agent *a = NULL;
    if (in->to_agent_id != 0) {
        a = tq_st_agent_get(s, c->tenant_id, in->to_agent_id);
        if (a == NULL) return fail(c, TQ_ERR_NOT_FOUND, "agent");
    }
    uint32_t tid = (uint32_t)in->ticket_id;
    if (in->to_queue_id != 0) ticket_set_queue(c, tid, (uint32_t)in->to_queue_id, c->now);
    if (a != NULL) {
        unsigned cls = tq_channel_class_of((enum tq_channel)t->origin);
        if (t->assignee != in->to_agent_id && status_table[t->status].counts_load &&
            !agent_has_room(a, cls)) {
            c->res->over_capacity = true;
        }
        ticket_set_assignee(c, tid, (uint32_t)in->to_agent_id, c->now);
    } else {
        ticket_set_assignee(c, tid, 0, c->now); /* to a queue: back to waiting there */
    }
    t->updated_ms = c->now;
    ticket_sync(s, tid, c->now);
    c->res->ticket_id = tid;
    c->res->ticket_number = t->number;
    return TQ_OK;
}

static enum tq_err cmd_ticket_merge(struct ctx *c) {
    struct tq_state *s = c->s;
    uint64_t sid = c->cmd->u.ticket_merge.source_id, tid = c->cmd->u.ticket_merge.target_id;
    struct tq_ticket *src = tq_st_ticket_get(s, c->tenant_id, sid);
    struct tq_ticket *dst = tq_st_ticket_get(s, c->tenant_id, tid);
    enum tq_err e = check_ticket_mutable(c, src);
    if (e == TQ_OK) e = check_ticket_mutable(c, dst);
    if (e != TQ_OK) return e;
    if (sid == tid) return fail(c, TQ_ERR_INVALID_ARGUMENT, "a ticket cannot merge into itself");
    /* messages: merge the two chains (newest first) into the target */
    for (uint32_t p = src->msg_tail; p != 0; p = st_message(s, p)->next)
        st_message(s, p)->ticket = (uint32_t)tid;
    uint32_t oldest = 0;
    uint32_t newest = chain_merge(s, dst->msg_tail, src->msg_tail, message_next, true, &oldest);
    dst->msg_tail = newest;
    dst->msg_head = oldest;
    dst->msg_count += src->msg_count;
    src->msg_head = src->msg_tail = 0;
    src->msg_count = 0;
    dst->updated_ms = c->now;
    tq_st_set_merged_into(src, (uint32_t)tid);
    ticket_set_status(c, (uint32_t)sid, TQ_STATUS_CLOSED, c->now);
    struct tq_event ev = ev_make(c, TQ_EVENT_TICKET_MERGED, c->tenant_id, c->now);
    ev.ticket_id = sid;
    ev.customer_id = src->customer;
    ev.old_value = (int64_t)sid;
    ev.new_value = (int64_t)tid;
    ev_send(c, &ev);
    ticket_sync(s, (uint32_t)sid, c->now);
    ticket_sync(s, (uint32_t)tid, c->now);
    c->res->ticket_id = tid;
    c->res->ticket_number = dst->number;
    return TQ_OK;
}

/* ==== commands: outbox, consumers, tick ==================================================== */

static enum tq_err cmd_outbox_take(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.outbox_take) *in = &c->cmd->u.outbox_take;
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT)
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "channel");
    if (in->max < 1 || in->max > TQ_OUTBOX_TAKE_MAX) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "max not in [1, 1000]");
    }
    if (in->lease_ms < 1 || !dur_ok(in->lease_ms)) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "lease_ms");
    }
    struct tq_tenant *tn = c->tn;
    outbox_expire(c, c->tenant_id, in->channel, c->now);
    /* Expiry-walk hints (struct tq_obentry): each entry taken gets pointed at by the one
     * TQ_OUTBOX_AHEAD places before it in the leased list, the previous take's last entries
     * included (the list's tail, taken moments ago in this mix: still cached) so the walk does
     * not go cold where one take's entries end. recent[p % TQ_OUTBOX_AHEAD] is position p. */
    struct tq_oblist *leased = &tn->ob_leased[in->channel];
    uint32_t recent[TQ_OUTBOX_AHEAD], back = 0;
    for (uint32_t t = leased->tail; t != 0 && back < TQ_OUTBOX_AHEAD; back++) {
        recent[TQ_OUTBOX_AHEAD - 1 - back] = t;
        t = st_obentry(s, t)->prev;
    }
    uint32_t n = 0, p = TQ_OUTBOX_AHEAD; /* position of the next entry taken */
    while (n < in->max && tn->ob_avail[in->channel].head != 0) {
        uint32_t e = tn->ob_avail[in->channel].head;
        struct tq_obentry *x = st_obentry(s, e);
        outbox_unlink(s, &tn->ob_avail[in->channel], e);
        /* counted in the entry only (struct tq_obentry): no message line is touched */
        if (x->attempts < TQ_OUTBOX_ATTEMPTS_LIMIT) x->attempts++; /* 4 bits in the message */
        x->leased = 1;
        x->lease_until_ms = c->now + in->lease_ms;
        outbox_insert_leased(s, leased, e);
        x->ahead = 0;
        uint32_t k = p % TQ_OUTBOX_AHEAD;
        if (p - TQ_OUTBOX_AHEAD >= TQ_OUTBOX_AHEAD - back) st_obentry(s, recent[k])->ahead = e;
        recent[k] = e;
        p++;
        s->taken[n++] = x->message;
    }
    c->res->taken_count = n;
    c->res->taken_ids = s->taken;
    return TQ_OK;
}

static enum tq_err cmd_outbox_ack(struct ctx *c) {
    struct tq_state *s = c->s;
    const __typeof__(c->cmd->u.outbox_ack) *in = &c->cmd->u.outbox_ack;
    struct tq_message *m = tq_st_message_get(s, c->tenant_id, in->message_id);
    if (m == NULL) return fail(c, TQ_ERR_NOT_FOUND, "message");
    if (msg_dir(m) != TQ_DIRECTION_OUTBOUND) {
        return fail(c, TQ_ERR_FAILED_PRECONDITION, "not an outbound message");
    }
    if (in->status != TQ_DELIVERY_SENT && in->status != TQ_DELIVERY_DELIVERED &&
        in->status != TQ_DELIVERY_READ && in->status != TQ_DELIVERY_FAILED) {
        return fail(c, TQ_ERR_INVALID_ARGUMENT, "ack status");
    }
    enum tq_err e = check_bytes(c, in->reason, 0, FIELD_STRING_BYTES_MAX, "reason");
    if (e == TQ_OK) e = check_bytes(c, in->provider_message_id, 0, TQ_EXTERNAL_ID_BYTES_MAX, "id");
    if (e != TQ_OK) return e;
    uint32_t mid = (uint32_t)in->message_id;
    unsigned cur = msg_delivery(m);
    uint32_t entry = tq_st_u32map_get(&s->ob_by_message, mid);
    c->res->message_id = mid;
    c->res->ticket_id = m->ticket;
    if (cur == TQ_DELIVERY_FAILED) {
        c->res->duplicate = true; /* failed is terminal: late receipts change nothing */
        return TQ_OK;
    }
    if (in->status == TQ_DELIVERY_FAILED) {
        if (cur >= TQ_DELIVERY_DELIVERED) {
            c->res->duplicate = true; /* a failure after delivery is a stale report */
            return TQ_OK;
        }
        if (in->retry && entry != 0) {
            struct tq_obentry *x = st_obentry(s, entry);
            if (x->attempts >= c->tn->attempts_max) {
                outbox_fail_exhausted(c, entry, c->now);
            } else if (x->leased) {
                struct tq_tenant *tn = c->tn;
                outbox_unlink(s, &tn->ob_leased[x->channel], entry);
                x->leased = 0;
                x->lease_until_ms = 0;
                outbox_push_tail(s, &tn->ob_avail[x->channel], entry);
            }
            return TQ_OK;
        }
        if (entry != 0) outbox_remove(s, entry);
        message_set_delivery(c, mid, TQ_DELIVERY_FAILED, c->now);
        return TQ_OK;
    }
    if (in->status <= cur) {
        c->res->duplicate = true; /* out of order or repeated receipt: never backwards */
        return TQ_OK;
    }
    if (entry != 0) outbox_remove(s, entry);
    message_set_delivery(c, mid, in->status, c->now);
    return TQ_OK;
}

static enum tq_err cmd_consumer_ack(struct ctx *c) {
    const __typeof__(c->cmd->u.consumer_ack) *in = &c->cmd->u.consumer_ack;
    enum tq_err e = check_str(c, in->name, 1, TQ_NAME_BYTES_MAX, "consumer name");
    if (e != TQ_OK) return e;
    struct tq_tenant *tn = c->tn;
    for (uint32_t i = 0; i < tn->consumer_n; i++) {
        struct tq_consumer *k = &tn->consumers[i];
        if (k->name.len == in->name.len && memcmp(k->name.ptr, in->name.ptr, in->name.len) == 0) {
            if (in->lsn > k->lsn) k->lsn = in->lsn;
            return TQ_OK;
        }
    }
    if (tn->consumer_n == TQ_CONSUMER_NAMES_MAX) {
        return fail(c, TQ_ERR_RESOURCE_EXHAUSTED, "too many named consumers");
    }
    if (tn->consumer_n == tn->consumer_cap) {
        uint32_t cap = tn->consumer_cap == 0 ? 4 : tn->consumer_cap * 2;
        tn->consumers = tq_xrealloc(tn->consumers, tn->consumer_cap * sizeof(struct tq_consumer),
                                    cap * sizeof(struct tq_consumer));
        tn->consumer_cap = cap;
    }
    tn->consumers[tn->consumer_n].name = tq_st_strdup(c->s, in->name.ptr, in->name.len);
    tn->consumers[tn->consumer_n].lsn = in->lsn;
    tn->consumer_n++;
    return TQ_OK;
}

static enum tq_err cmd_tick(struct ctx *c) {
    struct tq_state *s = c->s;
    /* Timed ticket items, globally in (due, ticket) order, one item per pop. */
    while (s->due_count > 0 && s->due[0].due_ms <= c->now) {
        uint32_t tid = s->due[0].ticket;
        /* the next item comes from one of the root's children: start fetching their tickets
         * (a pure hint; a TICK after a quiet spell pops hundreds of tickets spread over the
         * slab) */
        for (uint32_t k = 1; k <= 2 && k < s->due_count; k++) {
            if (s->due[k].due_ms <= c->now) prefetch_ticket(s, s->due[k].ticket);
        }
        struct item it = ticket_next_item(s, st_ticket(s, tid));
        TQ_ASSERT(it.at == s->due[0].due_ms);
        item_process(c, tid, it);
        /* Progress: the processed item is gone (each kind removes itself: warned bit, breached
         * state, status or assignee change), so the loop cannot spin on one item. */
        struct item next = ticket_next_item(s, st_ticket(s, tid));
        TQ_ASSERT(next.at != it.at || next.kind != it.kind || next.metric != it.metric);
    }
    /* Expired outbox leases, every tenant and channel (lazily: only here and at take). */
    uint32_t tenants = tq_slab_count(&s->tenants);
    for (uint32_t t = 1; t <= tenants; t++) {
        for (unsigned ch = 0; ch < TQ_CHANNEL_COUNT; ch++) {
            if (st_tenant(s, t)->ob_leased[ch].count != 0) outbox_expire(c, t, ch, c->now);
        }
    }
    return TQ_OK;
}

/* ==== apply =============================================================================== */

static enum tq_err dispatch(struct ctx *c) {
    switch (c->cmd->type) {
    case TQ_CMD_TENANT_CREATE: return cmd_tenant_create(c);
    case TQ_CMD_TENANT_SETTINGS: return cmd_tenant_settings(c);
    case TQ_CMD_SLA_POLICIES_SET: return cmd_policies_set(c);
    case TQ_CMD_BUSINESS_HOURS_SET: return cmd_business_hours(c);
    case TQ_CMD_TOKEN_ISSUE: return cmd_token_issue(c);
    case TQ_CMD_TOKEN_REVOKE: return cmd_token_revoke(c);
    case TQ_CMD_QUEUE_CREATE: return cmd_queue(c, true);
    case TQ_CMD_QUEUE_UPDATE: return cmd_queue(c, false);
    case TQ_CMD_AGENT_CREATE: return cmd_agent(c, true);
    case TQ_CMD_AGENT_UPDATE: return cmd_agent(c, false);
    case TQ_CMD_CUSTOMER_CREATE: return cmd_customer_create(c);
    case TQ_CMD_CUSTOMER_LINK: return cmd_customer_link(c);
    case TQ_CMD_CUSTOMER_MERGE: return cmd_customer_merge(c);
    case TQ_CMD_MESSAGE_INGEST: return cmd_ingest(c);
    case TQ_CMD_MESSAGE_REPLY: return cmd_reply(c);
    case TQ_CMD_TICKET_UPDATE: return cmd_ticket_update(c);
    case TQ_CMD_TICKET_CLAIM: return cmd_claim(c);
    case TQ_CMD_TICKET_RELEASE: return cmd_release(c);
    case TQ_CMD_TICKET_TRANSFER: return cmd_transfer(c);
    case TQ_CMD_TICKET_MERGE: return cmd_ticket_merge(c);
    case TQ_CMD_OUTBOX_TAKE: return cmd_outbox_take(c);
    case TQ_CMD_OUTBOX_ACK: return cmd_outbox_ack(c);
    case TQ_CMD_CONSUMER_ACK: return cmd_consumer_ack(c);
    case TQ_CMD_TICK: return cmd_tick(c);
    case TQ_CMD_CUSTOMER_ERASE: return cmd_customer_erase(c);
    }
    return tq_error_set(c->error, TQ_ERR_INVALID_ARGUMENT, "unknown command type %d",
                        (int)c->cmd->type);
}

static bool cmd_is_tenant_scoped(enum tq_cmd_type type) {
    return type != TQ_CMD_TENANT_CREATE && type != TQ_CMD_TICK && type != TQ_CMD_TOKEN_ISSUE &&
           type != TQ_CMD_TOKEN_REVOKE;
}

enum tq_err tq_state_apply(struct tq_state *state, uint64_t lsn, const struct tq_cmd *cmd,
                           struct tq_cmd_result *result, const struct tq_event_sink *events,
                           struct tq_error *error) {
    return tq_state_apply_hinted(state, lsn, cmd, NULL, result, events, error);
}

enum tq_err tq_state_apply_hinted(struct tq_state *state, uint64_t lsn, const struct tq_cmd *cmd,
                                  const struct tq_state_prefetch_hint *hint,
                                  struct tq_cmd_result *result, const struct tq_event_sink *events,
                                  struct tq_error *error) {
    TQ_ASSERT(state != NULL && cmd != NULL);
    TQ_ASSERT(lsn > state->lsn);
    TQ_ASSERT(state->dirty_n == 0);
    struct tq_cmd_result scratch;
    if (result == NULL) result = &scratch;
    memset(result, 0, sizeof(*result));
    struct ctx c = {state, cmd, lsn, cmd->now_ms, events, result, 0, NULL, error, hint};
    if (!time_ok(cmd->now_ms)) return fail(&c, TQ_ERR_INVALID_ARGUMENT, "now_ms out of range");
    if (cmd->tenant_id != 0 || cmd_is_tenant_scoped(cmd->type)) {
        c.tn = tq_st_tenant_get(state, cmd->tenant_id);
        if (c.tn == NULL) return fail(&c, TQ_ERR_NOT_FOUND, "tenant");
        c.tenant_id = (uint32_t)cmd->tenant_id;
    }
    if (cmd->actor_agent_id != 0 &&
        tq_st_agent_get(state, cmd->tenant_id, cmd->actor_agent_id) == NULL) {
        return fail(&c, TQ_ERR_PERMISSION_DENIED, "actor is not an agent of this tenant");
    }
    enum tq_err err = dispatch(&c);
    if (err != TQ_OK) {
        /* Validation happens before any mutation: nothing may be pending here. */
        TQ_ASSERT(state->dirty_n == 0);
        return err;
    }
    autoassign_run(&c);
    state->lsn = lsn;
    if (result->tenant_id == 0) result->tenant_id = c.tenant_id;
    tq_error_clear(error);
    return TQ_OK;
}

/* ==== lifecycle =========================================================================== */

struct tq_state *tq_st_alloc(const struct tq_state_options *options) {
    struct tq_state *s = tq_xcalloc(1, sizeof(*s));
    s->body_bytes_max = options != NULL && options->body_bytes_max != 0 ? options->body_bytes_max
                                                                        : TQ_BODY_BYTES_DEFAULT_MAX;
    tq_st_slab_init(&s->tenants, sizeof(struct tq_tenant), TQ_SLAB_SHIFT_SMALL);
    tq_st_slab_init(&s->tokens, sizeof(struct tq_token), TQ_SLAB_SHIFT_SMALL);
    tq_st_slab_init(&s->queues, sizeof(struct tq_queue), TQ_SLAB_SHIFT_SMALL);
    tq_st_slab_init(&s->agents, sizeof(struct tq_agent), TQ_SLAB_SHIFT_SMALL);
    tq_st_slab_init(&s->customers, sizeof(struct tq_customer), TQ_SLAB_SHIFT);
    tq_st_slab_init(&s->identities, sizeof(struct tq_identity), TQ_SLAB_SHIFT);
    tq_st_slab_init(&s->tickets, sizeof(struct tq_ticket), TQ_SLAB_SHIFT);
    tq_st_slab_init(&s->tkidx, sizeof(struct tq_tkidx), TQ_SLAB_SHIFT);
    tq_st_slab_init(&s->messages, sizeof(struct tq_message), TQ_SLAB_SHIFT);
    tq_st_slab_init(&s->interns, sizeof(struct tq_intern), 8);
    tq_st_slab_init(&s->obentries, sizeof(struct tq_obentry), 8);
    if (options != NULL) {
        s->pf.release = options->release;
        s->pf.release_ctx = options->release_ctx;
    }
    if (options != NULL && options->prefault != NULL) {
        s->pf.fn = options->prefault;
        s->pf.ctx = options->prefault_ctx;
        struct tq_slab *grown[] = {&s->customers, &s->identities, &s->tickets, &s->tkidx,
                                   &s->messages};
        for (size_t i = 0; i < sizeof(grown) / sizeof(grown[0]); i++)
            grown[i]->pf = &s->pf;
    }
    tq_st_idtab_init(&s->ident_index, 1024, true);
    tq_st_idtab_set_incremental(&s->ident_index); /* grows during live ingest */
    msgtab_init(&s->msg_index, 1024);
    tq_st_idtab_init(&s->token_index, 64, false);
    tq_st_idtab_init(&s->intern_index, 256, false);
    tq_st_u32map_init(&s->ob_by_message, 256);
    s->taken = tq_xcalloc(TQ_OUTBOX_TAKE_MAX, sizeof(uint64_t));
    s->view_tags = tq_xcalloc(TQ_TAGS_PER_TICKET_MAX, sizeof(struct tq_str));
    s->view_fields = tq_xcalloc(TQ_CUSTOM_FIELDS_PER_TICKET_MAX, sizeof(struct tq_custom_field));
    return s;
}

struct tq_state *tq_state_new(const struct tq_state_options *options) {
    return tq_st_alloc(options);
}

/* A heap or table is passed whole, to its capacity: a heap writes past its count next. */
static void region_array(tq_state_region_fn *fn, void *ctx, void *p, size_t bytes) {
    if (p != NULL && bytes > 0) fn(ctx, p, bytes, true);
}

static void idtab_regions(const struct tq_idtab *t, tq_state_region_fn *fn, void *ctx) {
    region_array(fn, ctx, t->slots, (t->mask + 1) * sizeof(uint32_t));
    if (t->old != NULL) region_array(fn, ctx, t->old, (t->old_mask + 1) * sizeof(uint32_t));
}

void tq_state_regions(const struct tq_state *s, tq_state_region_fn *fn, void *ctx) {
    TQ_ASSERT(s != NULL && fn != NULL);
    /* 1. the heaps: an ingest burst writes a path of every heap it touches, so nearly all of
     *    their pages right after a fork (docs/performance-server.md, "Where the faults are") */
    region_array(fn, ctx, s->due, s->due_bytes);
    uint32_t n = tq_slab_count(&s->tenants);
    for (uint32_t i = 1; i <= n; i++) {
        const struct tq_tenant *tn = st_tenant(s, i);
        region_array(fn, ctx, tn->sla.nodes, (size_t)tn->sla.cap * sizeof(*tn->sla.nodes));
    }
    n = tq_slab_count(&s->queues);
    for (uint32_t i = 1; i <= n; i++) {
        const struct tq_queue *q = st_queue(s, i);
        for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
            region_array(fn, ctx, q->heap[k].ids, (size_t)q->heap[k].cap * sizeof(uint32_t));
        }
    }
    /* 2. the slabs apply updates in place (a message appended writes its ticket) */
    tq_st_slab_regions(&s->tickets, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->tkidx, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->customers, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->tenants, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->queues, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->agents, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->tokens, TQ_ST_SLAB_ALL, fn, ctx, true);
    tq_st_slab_regions(&s->obentries, TQ_ST_SLAB_ALL, fn, ctx, true);
    /* 3. the hash tables (one random slot per insert) */
    region_array(fn, ctx, s->msg_index.slots, s->msg_index.cap * sizeof(uint32_t));
    idtab_regions(&s->ident_index, fn, ctx);
    idtab_regions(&s->token_index, fn, ctx);
    idtab_regions(&s->intern_index, fn, ctx);
    region_array(fn, ctx, s->ob_by_message.slots, (s->ob_by_message.mask + 1) * sizeof(uint64_t));
    /* 4. where the append-only slabs write next */
    tq_st_slab_regions(&s->messages, TQ_ST_SLAB_TAIL, fn, ctx, true);
    tq_st_slab_regions(&s->identities, TQ_ST_SLAB_TAIL, fn, ctx, true);
    tq_st_slab_regions(&s->interns, TQ_ST_SLAB_TAIL, fn, ctx, true);
    /* 5. cold: the rest of them (the rare in-place writes there, an outbound message's
     *    delivery status or an erasure, are left to the loop's copy-on-write) */
    tq_st_slab_regions(&s->messages, TQ_ST_SLAB_BEFORE_TAIL, fn, ctx, false);
    tq_st_slab_regions(&s->identities, TQ_ST_SLAB_BEFORE_TAIL, fn, ctx, false);
    tq_st_slab_regions(&s->interns, TQ_ST_SLAB_BEFORE_TAIL, fn, ctx, false);
}

void tq_state_free(struct tq_state *s) {
    if (s == NULL) return;
    uint32_t n = tq_slab_count(&s->tenants);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_tenant *tn = st_tenant(s, i);
        tq_free(tn->policies, tn->policy_cap * sizeof(struct tq_policy));
        if (tn->calendar != NULL) tq_free(tn->calendar, sizeof(*tn->calendar));
        tq_free(tn->queue_ids, tn->queue_cap * sizeof(uint32_t));
        tq_free(tn->agent_ids, tn->agent_cap * sizeof(uint32_t));
        tq_free(tn->consumers, tn->consumer_cap * sizeof(struct tq_consumer));
        tq_st_slaidx_free(tn);
    }
    n = tq_slab_count(&s->queues);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_queue *q = st_queue(s, i);
        for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
            tq_free(q->heap[k].ids, q->heap[k].cap * sizeof(uint32_t));
        }
    }
    n = tq_slab_count(&s->tickets);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_ticket *t = st_ticket(s, i);
        if (t->extras != NULL) {
            tq_free(t->extras, extras_bytes(t->extras->tag_count, t->extras->field_count));
        }
    }
    tq_st_slab_free(&s->tenants);
    tq_st_slab_free(&s->tokens);
    tq_st_slab_free(&s->queues);
    tq_st_slab_free(&s->agents);
    tq_st_slab_free(&s->customers);
    tq_st_slab_free(&s->identities);
    tq_st_slab_free(&s->tickets);
    tq_st_slab_free(&s->tkidx);
    tq_st_slab_free(&s->messages);
    tq_st_slab_free(&s->interns);
    tq_st_slab_free(&s->obentries);
    tq_st_idtab_free(&s->ident_index);
    msgtab_free(&s->msg_index);
    tq_st_idtab_free(&s->token_index);
    tq_st_idtab_free(&s->intern_index);
    tq_st_u32map_free(&s->ob_by_message);
    tq_st_array_free(s->due, s->due_bytes, s->due_reserved);
    tq_free(s->dirty, s->dirty_cap * sizeof(uint32_t));
    tq_st_strings_free(s);
    tq_free(s->taken, TQ_OUTBOX_TAKE_MAX * sizeof(uint64_t));
    tq_free(s->view_tags, TQ_TAGS_PER_TICKET_MAX * sizeof(struct tq_str));
    tq_free(s->view_fields, TQ_CUSTOM_FIELDS_PER_TICKET_MAX * sizeof(struct tq_custom_field));
    tq_free(s, sizeof(*s));
}

uint64_t tq_state_lsn(const struct tq_state *s) {
    return s->lsn;
}

static void prefetch_ticket_children(const struct tq_state *s, uint32_t tid) {
    const struct tq_ticket *t = st_ticket(s, tid);
    const struct tq_tkidx *x = st_tkidx(s, tid);
    tq_st_slaidx_prefetch(s, t); /* the ticket's node in its tenant's SLA index */
    /* The entry only: 70% of ticket changes leave the due time alone (the bench's mix), and
     * since a re-keyed entry sifts one way only, its parent or its children are needed in
     * about one change in six; fetching both for every ticket cost two random lines each. */
    if (x->due_pos != 0 && x->due_pos <= s->due_count) __builtin_prefetch(&s->due[x->due_pos - 1]);
    if (t->extras != NULL) __builtin_prefetch(t->extras);
}

/* Finds the first slot from probe on (within one run, at most 16 slots: one cache line's worth)
 * whose tag is the sender key's, and prefetches that identity. False when the run ends (a new
 * sender: nothing to fetch), the id is stale or the bound is reached. */
static bool prefetch_identity_from(const struct tq_state *s, struct tq_state_prefetch_hint *h,
                                   uint64_t probe) {
    const struct tq_idtab *tab = &s->ident_index;
    uint32_t tag = tq_idtab_tag(tab, h->ident_hash);
    for (unsigned k = 0; k < 16; k++, probe = (probe + 1) & tab->mask) {
        uint32_t slot = tab->slots[probe];
        if (slot == 0) return false;
        if ((slot & ~TQ_IDTAB_ID_MASK) != tag) continue;
        uint32_t id = slot & TQ_IDTAB_ID_MASK;
        if (id >= s->identities.next_id) return false;
        h->probe = (uint32_t)probe;
        h->ident = id;
        __builtin_prefetch(st_identity(s, id));
        return true;
    }
    return false;
}

/* Stage 0: hashes an inbound message's keys and fetches the first link of every record type
 * that has one. Out of line: its key buffer makes a big stack frame, which stages 1-4 (four
 * calls per record) should not set up and tear down each time. */
__attribute__((noinline)) static void prefetch_stage0(const struct tq_state *s,
                                                      const struct tq_cmd *cmd,
                                                      struct tq_state_prefetch_hint *h) {
    h->msg_hash = h->ident_hash = 0;
    h->ident = h->ticket = h->probe = 0;
    h->step = TQ_PREFETCH_STEP_SLOT;
    h->ident_norm_len = 0;
    switch (cmd->type) {
    case TQ_CMD_OUTBOX_ACK: {
        uint64_t mid = cmd->u.outbox_ack.message_id;
        if (mid != 0 && mid < s->messages.next_id) {
            h->ident = (uint32_t)mid; /* the message id rides in the ident slot */
            __builtin_prefetch(st_message(s, (uint32_t)mid));
            tq_st_u32map_prefetch(&s->ob_by_message, (uint32_t)mid); /* its outbox entry's id */
        }
        return;
    }
    case TQ_CMD_MESSAGE_REPLY:
    case TQ_CMD_TICKET_UPDATE: {
        uint64_t id = cmd->type == TQ_CMD_MESSAGE_REPLY ? cmd->u.reply.ticket_id
                                                        : cmd->u.ticket_update.ticket_id;
        if (id != 0 && id < s->tickets.next_id) {
            h->ticket = (uint32_t)id;
            prefetch_ticket(s, (uint32_t)id);
        }
        return;
    }
    case TQ_CMD_MESSAGE_INGEST: break;
    default: return;
    }
    const __typeof__(cmd->u.ingest) *in = &cmd->u.ingest;
    if ((unsigned)in->channel >= TQ_CHANNEL_COUNT) return;
    /* both keys hashed first, then both slots fetched back to back: the two fetches (each a
     * TLB miss too, in tables of megabytes) overlap instead of one waiting behind the hashing */
    if (in->message_external_id.len > 0 &&
        in->message_external_id.len <= TQ_EXTERNAL_ID_BYTES_MAX) {
        h->msg_hash = tq_st_message_hash(cmd->tenant_id, in->channel, in->message_external_id.ptr,
                                         in->message_external_id.len);
    }
    if (in->from_external_id.len > 0 && in->from_external_id.len <= TQ_EXTERNAL_ID_BYTES_MAX) {
        /* an e-mail address is lower-cased into the hint, so apply need not do it again */
        char buf[TQ_EXTERNAL_ID_BYTES_MAX];
        uint32_t n = in->from_external_id.len;
        char *out = n <= sizeof(h->ident_norm) ? h->ident_norm : buf;
        const char *norm = normalise_ext(in->channel, in->from_external_id, out);
        if (norm == h->ident_norm) h->ident_norm_len = (uint8_t)n;
        h->ident_hash = tq_st_identity_hash(cmd->tenant_id, in->channel, norm, n);
    }
    if (h->msg_hash != 0) {
        __builtin_prefetch(&s->msg_index.slots[msg_home(&s->msg_index, h->msg_hash)]);
    }
    if (h->ident_hash != 0) {
        __builtin_prefetch(&s->ident_index.slots[h->ident_hash & s->ident_index.mask]);
    }
    /* (the body is not fetched: a decode-ahead window copied the record, body included,
     * moments ago; fetching those lines again stalled behind the copy's own stores) */
}

void tq_state_prefetch(const struct tq_state *s, const struct tq_cmd *cmd, unsigned stage,
                       struct tq_state_prefetch_hint *h) {
    TQ_ASSERT(stage < TQ_STATE_PREFETCH_STAGES);
    if (stage == 0) {
        prefetch_stage0(s, cmd, h);
        return;
    }
    if (cmd->type != TQ_CMD_MESSAGE_INGEST) {
        /* one id from the record: fetched at stage 0, what hangs off it at stage 2 (stage 1 is
         * where an inbound message's slot is read; keep one gap) */
        if (stage != 2) return;
        if (cmd->type == TQ_CMD_OUTBOX_ACK) {
            if (h->ident == 0 || h->ident >= s->messages.next_id) return;
            uint32_t tid = st_message(s, h->ident)->ticket;
            if (tid != 0 && tid < s->tickets.next_id) __builtin_prefetch(st_ticket(s, tid));
            return;
        }
        if (h->ticket != 0 && h->ticket < s->tickets.next_id) {
            prefetch_ticket_children(s, h->ticket);
        }
        return;
    }
    /* Stages 1-4 walk the chain one link per call: slot -> identity -> customer -> ticket ->
     * what hangs off the ticket. The slot stage skips the slots whose tag is another key's
     * (linear probing displaced ours) without reading their identities; an identity that
     * still turns out not to be ours (a tag collision) is replaced by the next candidate, at
     * the price of one link; the walk stops at an empty slot or a stale id. */
    if (stage == 1 && h->msg_hash != 0) {
        uint32_t slot = s->msg_index.slots[msg_home(&s->msg_index, h->msg_hash)];
        if (slot != 0 && (slot & ~MSG_ID_MASK) == msg_fp(h->msg_hash)) {
            __builtin_prefetch(st_message(s, slot & MSG_ID_MASK)); /* likely a duplicate */
        }
    }
    if (h->ident_hash == 0) return;
    switch (h->step) {
    case TQ_PREFETCH_STEP_SLOT:
        if (!prefetch_identity_from(s, h, h->ident_hash & s->ident_index.mask)) break;
        h->step = TQ_PREFETCH_STEP_IDENTITY;
        return;
    case TQ_PREFETCH_STEP_IDENTITY: {
        const struct tq_identity *x = st_identity(s, h->ident);
        if (x->hash != h->ident_hash) {
            /* a tag collision (1 in 16 of the other keys in the run): the next candidate, at
             * the price of one stage (a regrowth since stage 0 leaves probe inside the bigger
             * table: a useless but harmless hint) */
            if (!prefetch_identity_from(s, h, (h->probe + 1) & s->ident_index.mask)) break;
            return;
        }
        if (x->customer == 0 || x->customer >= s->customers.next_id) break;
        prefetch_span(st_customer(s, x->customer), sizeof(struct tq_customer));
        h->step = TQ_PREFETCH_STEP_CUSTOMER;
        return;
    }
    case TQ_PREFETCH_STEP_CUSTOMER: {
        uint32_t t = st_customer(s, st_identity(s, h->ident)->customer)->ticket_head;
        if (t == 0 || t >= s->tickets.next_id) break;
        h->ticket = t;
        prefetch_ticket(s, t);
        h->step = TQ_PREFETCH_STEP_TICKET;
        return;
    }
    case TQ_PREFETCH_STEP_TICKET: {
        /* apply reads the ticket's index entries only if this message changes what they
         * derive from (ingest_touches_index, the same test apply makes); most do not */
        const struct tq_ticket *t = st_ticket(s, h->ticket);
        if (t->tenant != 0 && t->tenant < s->tenants.next_id &&
            ingest_touches_index(st_tenant(s, t->tenant), t, cmd->u.ingest.channel)) {
            prefetch_ticket_children(s, h->ticket);
        } else if (t->extras != NULL) {
            __builtin_prefetch(t->extras); /* ingest_pick reads merged_into there */
        }
        break;
    }
    default: break;
    }
    h->step = TQ_PREFETCH_STEP_DONE;
}

uint64_t tq_state_next_deadline_ms(const struct tq_state *s) {
    uint64_t next = s->due_count > 0 ? s->due[0].due_ms : UINT64_MAX;
    /* Leases expire lazily; report the earliest one so a TICK notices it. */
    uint32_t tenants = tq_slab_count(&s->tenants);
    for (uint32_t t = 1; t <= tenants; t++) {
        const struct tq_tenant *tn = st_tenant(s, t);
        for (unsigned ch = 0; ch < TQ_CHANNEL_COUNT; ch++) {
            uint32_t e = tn->ob_leased[ch].head; /* sorted: the head expires first */
            if (e != 0 && st_obentry(s, e)->lease_until_ms < next) {
                next = st_obentry(s, e)->lease_until_ms;
            }
        }
    }
    return next;
}

/* Rebuilds the derived indices after a snapshot load from the entities' persistent fields:
 * identity/message/token/intern tables, identity, ticket and message chains, queue heaps,
 * agent loads and the deadline heap. The outbox lists and map are restored by the loader. */
static uint64_t intern_hash_of2(const struct tq_state *s, uint32_t id) {
    return st_intern(s, id)->hash;
}

void tq_st_rebuild_indices(struct tq_state *s) {
    uint32_t n = tq_slab_count(&s->interns);
    for (uint32_t i = 1; i <= n; i++) {
        tq_st_idtab_insert(s, &s->intern_index, st_intern(s, i)->hash, i, intern_hash_of2);
    }
    n = tq_slab_count(&s->tokens);
    for (uint32_t i = 1; i <= n; i++) {
        tq_st_idtab_insert(s, &s->token_index, token_hash_of(s, i), i, token_hash_of);
    }
    n = tq_slab_count(&s->identities);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_identity *x = st_identity(s, i);
        struct tq_customer *cu = st_customer(s, x->customer);
        x->next = 0;
        if (x->ext_len == 0) continue; /* erased: in no chain, no table */
        if (cu->ident_head == 0) {
            cu->ident_head = i;
        } else {
            uint32_t p = cu->ident_head;
            while (st_identity(s, p)->next != 0)
                p = st_identity(s, p)->next;
            st_identity(s, p)->next = i;
        }
        cu->ident_count++;
        tq_st_idtab_insert(s, &s->ident_index, x->hash, i, identity_hash_of);
    }
    n = tq_slab_count(&s->tickets);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_ticket *t = st_ticket(s, i);
        struct tq_customer *cu = st_customer(s, t->customer);
        t->customer_next = cu->ticket_head; /* ascending ids pushed in front: descending */
        cu->ticket_head = i;
        t->msg_head = t->msg_tail = 0;
        t->msg_count = 0;
    }
    n = tq_slab_count(&s->messages);
    /* sized once (not regrown ~30 times on the way), with an eighth to spare so the first new
     * message does not regrow it: 6 bytes per message, inside the 5.3..8 of a grown table */
    TQ_ASSERT(s->msg_index.count == 0);
    msgtab_reserve(s, (uint64_t)n + n / 8, 1);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_message *m = st_message(s, i);
        m->next = 0;
        message_append(s, m->ticket, i);
        if (m->ext_hash != 0) message_index_add(s, m->ext_hash, i, UINT64_MAX);
    }
    n = tq_slab_count(&s->tickets);
    for (uint32_t i = 1; i <= n; i++) {
        struct tq_ticket *t = st_ticket(s, i);
        struct tq_tkidx *x = st_tkidx(s, i);
        t->flags = 0;
        x->queue_pos = x->due_pos = 0;
        if (tq_st_ticket_should_queue(t)) {
            x->qkey = tq_st_queue_key(t);
            qh_insert(s, ticket_heap(s, t), i);
            t->flags |= TQ_TF_QUEUED;
        }
        if (tq_st_ticket_counts_load(t)) {
            st_agent(s, t->assignee)->load[tq_channel_class_of((enum tq_channel)t->origin)]++;
            t->flags |= TQ_TF_IN_LOAD;
        }
        struct item next = ticket_next_item(s, t);
        dh_update(s, i, next.at);
        t->sla_pos = 0;
        tq_st_slaidx_sync(s, i, next.sla_next);
    }
}
