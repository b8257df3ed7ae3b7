/* server/state/query.c: read-only views of the state (tickets, messages, customers, queues,
 * agents, tokens, SLA, analytics) and the O(n) invariant checker.
 *
 * Views point into the state (strings in the string store, tags and custom fields in per-state
 * scratch arrays) and are valid until the next apply or free. Every query takes the tenant and
 * answers for another tenant's id exactly as for a missing one (NOT_FOUND / false / 0).
 *
 * What a message view holds is what the state keeps in memory: id, ticket, LSN, direction,
 * channel, author kind, delivery status and attempts (and, for inbound messages, the ticket's
 * customer as author). created_ms, provider_ts_ms and an agent author are in the record at
 * view.lsn: tq_state_message_complete() fills them from the decoded record. That keeps a
 * message at 24 bytes.
 */
#include "state_internal.h"

#include <string.h>

/* ---- tokens ------------------------------------------------------------------------------- */

static void token_view(const struct tq_state *s, uint32_t id, struct tq_token_view *out) {
    const struct tq_token *tk = st_token(s, id);
    out->token_id = id;
    out->tenant_id = tk->tenant;
    out->agent_id = tk->agent;
    out->role = (enum tq_role)tk->role;
    out->revoked = tk->revoked != 0;
}

enum tq_err tq_state_token_find(const struct tq_state *s, const uint8_t hash[32],
                                struct tq_token_view *out) {
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h |= (uint64_t)hash[i] << (8 * i);
    const struct tq_idtab *tab = &s->token_index;
    TQ_DEBUG_ASSERT(!tab->incremental);
    for (uint64_t i = h & tab->mask;; i = (i + 1) & tab->mask) {
        uint32_t id = tab->slots[i];
        if (id == 0) return TQ_ERR_NOT_FOUND;
        /* Constant time over all 32 bytes: no early exit on the first differing byte. */
        const uint8_t *stored = st_token(s, id)->hash;
        uint8_t diff = 0;
        for (int k = 0; k < 32; k++)
            diff |= (uint8_t)(stored[k] ^ hash[k]);
        if (diff == 0) {
            if (out != NULL) token_view(s, id, out);
            return st_token(s, id)->revoked ? TQ_ERR_FAILED_PRECONDITION : TQ_OK;
        }
    }
}

bool tq_state_token_get(const struct tq_state *s, uint64_t token_id, struct tq_token_view *out) {
    if (token_id == 0 || token_id >= s->tokens.next_id) return false;
    token_view(s, (uint32_t)token_id, out);
    return true;
}

/* ---- tenants ------------------------------------------------------------------------------ */

bool tq_state_tenant_get(const struct tq_state *s, uint64_t tenant_id, struct tq_tenant_view *out) {
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL) return false;
    memset(out, 0, sizeof(*out));
    out->tenant_id = tenant_id;
    out->name = tn->name;
    out->auto_close_ms = tn->auto_close_ms;
    out->sla_warning_permille = tn->warn_permille;
    out->ticket_count = tn->ticket_count;
    out->message_count = tn->message_count;
    out->customer_count = tn->customer_count;
    return true;
}

/* ---- tickets and messages ----------------------------------------------------------------- */

enum tq_err tq_state_ticket_get(const struct tq_state *s, uint64_t tenant_id, uint64_t ticket_id,
                                struct tq_ticket_view *out) {
    const struct tq_ticket *t = tq_st_ticket_get(s, tenant_id, ticket_id);
    if (t == NULL) return TQ_ERR_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->ticket_id = ticket_id;
    out->tenant_id = t->tenant;
    out->number = t->number;
    out->customer_id = t->customer;
    out->queue_id = t->queue;
    out->assignee_id = t->assignee;
    out->merged_into_id = tk_merged_into(t);
    out->follow_up_of_id = tk_follow_up_of(t);
    out->status = (enum tq_ticket_status)t->status;
    out->priority = (enum tq_priority)t->priority;
    out->origin_channel = (enum tq_channel)t->origin;
    out->subject = (struct tq_str){t->subject != NULL ? t->subject : "", t->subject_len};
    out->created_ms = t->created_ms;
    out->updated_ms = t->updated_ms;
    out->first_response_ms = t->first_response_ms;
    out->solved_ms = t->solved_ms;
    out->wake_at_ms = tk_wake_at(t);
    out->message_count = t->msg_count;
    if (t->extras != NULL) {
        const uint32_t *tags = extras_tags(t->extras);
        for (uint32_t i = 0; i < t->extras->tag_count; i++)
            s->view_tags[i] = st_intern(s, tags[i])->str;
        out->tag_count = t->extras->tag_count;
        out->tags = s->view_tags;
        for (uint32_t i = 0; i < t->extras->field_count; i++) {
            const struct tq_tag_field *f = &t->extras->fields[i];
            struct tq_custom_field *v = &s->view_fields[i];
            memset(v, 0, sizeof(*v));
            v->key = st_intern(s, f->key)->str;
            v->type = (enum tq_field_type)f->type;
            v->int_value = f->int_value;
            v->string_value = f->string_value;
        }
        out->field_count = t->extras->field_count;
        out->custom_fields = s->view_fields;
    }
    out->sla_count = TQ_SLA_METRIC_COUNT;
    for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
        struct tq_sla_view *v = &out->sla[m];
        v->metric = (enum tq_sla_metric)m;
        v->state = (enum tq_sla_clock_state)t->sla_state[m];
        v->deadline_ms = tk_clock_deadline(t, (enum tq_sla_metric)m);
        v->target_ms = tq_st_clock_target(s, t, (enum tq_sla_metric)m);
        v->elapsed_ms = tq_st_clock_elapsed(s, t, (enum tq_sla_metric)m);
        v->warned = (t->sla_warned & (1u << m)) != 0;
    }
    return TQ_OK;
}

static void message_view(const struct tq_state *s, uint32_t id, struct tq_message_view *out) {
    const struct tq_message *m = st_message(s, id);
    memset(out, 0, sizeof(*out));
    if (msg_author(m) == TQ_AUTHOR_CUSTOMER) out->author_id = st_ticket(s, m->ticket)->customer;
    out->message_id = id;
    out->ticket_id = m->ticket;
    out->lsn = msg_lsn(m);
    out->direction = (enum tq_direction)msg_dir(m);
    out->channel = (enum tq_channel)msg_chan(m);
    out->author_kind = (enum tq_author_kind)msg_author(m);
    out->delivery = (enum tq_delivery)msg_delivery(m);
    out->attempts = tq_st_message_attempts(s, id);
}

void tq_state_message_complete(struct tq_message_view *v, const struct tq_cmd *record) {
    if (record->type == TQ_CMD_MESSAGE_INGEST && v->direction == TQ_DIRECTION_INBOUND) {
        v->created_ms = record->now_ms;
        v->provider_ts_ms = record->u.ingest.provider_ts_ms;
    } else if (record->type == TQ_CMD_MESSAGE_REPLY && v->direction != TQ_DIRECTION_INBOUND) {
        v->created_ms = record->now_ms;
        if (v->author_kind == TQ_AUTHOR_AGENT) v->author_id = record->actor_agent_id;
    }
}

uint32_t tq_state_ticket_messages(const struct tq_state *s, uint64_t tenant_id, uint64_t ticket_id,
                                  uint32_t first, uint32_t cap, struct tq_message_view *out) {
    const struct tq_ticket *t = tq_st_ticket_get(s, tenant_id, ticket_id);
    if (t == NULL || first >= t->msg_count || cap == 0) return 0;
    /* The chain runs newest first (state.c, message_append): walk down from the newest to the
     * highest index asked for, then fill the page from its end. */
    uint32_t n = t->msg_count - first < cap ? t->msg_count - first : cap;
    uint32_t last = first + n - 1, i = t->msg_count - 1;
    for (uint32_t m = t->msg_tail; m != 0; m = st_message(s, m)->next, i--) {
        if (i > last) continue;
        message_view(s, m, &out[i - first]);
        if (i == first) return n;
    }
    TQ_ASSERT(false); /* the chain holds msg_count messages */
    return 0;
}

enum tq_err tq_state_message_get(const struct tq_state *s, uint64_t tenant_id, uint64_t message_id,
                                 struct tq_message_view *out) {
    if (tq_st_message_get(s, tenant_id, message_id) == NULL) return TQ_ERR_NOT_FOUND;
    message_view(s, (uint32_t)message_id, out);
    return TQ_OK;
}

/* ---- customers ---------------------------------------------------------------------------- */

static void customer_view(const struct tq_state *s, uint32_t id, struct tq_customer_view *out) {
    const struct tq_customer *c = st_customer(s, id);
    memset(out, 0, sizeof(*out));
    out->customer_id = id;
    out->tenant_id = c->tenant;
    out->merged_into_id = c->merged_into;
    out->erased = c->erased != 0;
    out->name = c->name;
    out->language = c->language;
    out->identity_count = c->ident_count;
    for (uint32_t t = c->ticket_head; t != 0; t = st_ticket(s, t)->customer_next) {
        const struct tq_ticket *tk = st_ticket(s, t);
        if (tk->status != TQ_STATUS_CLOSED && tk_merged_into(tk) == 0) out->open_ticket_count++;
    }
}

enum tq_err tq_state_customer_get(const struct tq_state *s, uint64_t tenant_id,
                                  uint64_t customer_id, struct tq_customer_view *out) {
    if (tq_st_customer_get(s, tenant_id, customer_id) == NULL) return TQ_ERR_NOT_FOUND;
    customer_view(s, (uint32_t)customer_id, out);
    return TQ_OK;
}

enum tq_err tq_state_customer_find(const struct tq_state *s, uint64_t tenant_id,
                                   enum tq_channel channel, struct tq_str external_id,
                                   struct tq_customer_view *out) {
    if ((unsigned)channel >= TQ_CHANNEL_COUNT || tq_st_tenant_get(s, tenant_id) == NULL) {
        return TQ_ERR_NOT_FOUND;
    }
    uint32_t ident = tq_st_identity_lookup(s, tenant_id, channel, external_id);
    if (ident == 0) return TQ_ERR_NOT_FOUND;
    uint32_t cid = st_identity(s, ident)->customer;
    while (st_customer(s, cid)->merged_into != 0)
        cid = st_customer(s, cid)->merged_into;
    customer_view(s, cid, out);
    return TQ_OK;
}

bool tq_state_customer_identity(const struct tq_state *s, uint64_t tenant_id, uint64_t customer_id,
                                uint32_t index, enum tq_channel *channel,
                                struct tq_str *external_id) {
    const struct tq_customer *c = tq_st_customer_get(s, tenant_id, customer_id);
    if (c == NULL) return false;
    uint32_t i = 0;
    for (uint32_t x = c->ident_head; x != 0; x = st_identity(s, x)->next, i++) {
        if (i == index) {
            const struct tq_identity *id = st_identity(s, x);
            *channel = (enum tq_channel)id->channel;
            *external_id = (struct tq_str){ident_ext(id), id->ext_len};
            return true;
        }
    }
    return false;
}

/* ---- queues and agents -------------------------------------------------------------------- */

enum tq_err tq_state_queue_get(const struct tq_state *s, uint64_t tenant_id, uint64_t queue_id,
                               struct tq_queue_view *out) {
    const struct tq_queue *q = tq_st_queue_get(s, tenant_id, queue_id);
    if (q == NULL) return TQ_ERR_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->queue_id = queue_id;
    out->tenant_id = q->tenant;
    out->name = q->name;
    out->auto_assign = q->auto_assign;
    out->assignment_timeout_ms = q->timeout_ms;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++)
        out->depth += q->heap[k].count;
    out->oldest_enqueued_ms = tq_st_qage_oldest(s, (uint32_t)queue_id);
    return TQ_OK;
}

uint32_t tq_state_queue_ids(const struct tq_state *s, uint64_t tenant_id, uint64_t *out,
                            uint32_t cap) {
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL) return 0;
    for (uint32_t i = 0; i < tn->queue_n && i < cap; i++)
        out[i] = tn->queue_ids[i];
    return tn->queue_n;
}

/* Reads of the queue and deadline heaps select the first cap entries by walking each binary
 * heap best-first: a small frontier (itself a binary heap of heap positions) starts at the
 * roots; popping its best entry yields the next entry in order and pushes that entry's two
 * children. O(cap log cap) per page instead of a scan of the whole heap, which cost a
 * dashboard ~1 ms per read at 1.5 M queued tickets. The frontier lives on the stack; the
 * deadline walk, which may have to skip other tenants' entries, falls back to the scan when it
 * outgrows it. Debug builds compare every answer with the scan. */
#define SELECT_FRONTIER_MAX 4096u

struct heap_pos {
    uint32_t heap; /* which heap (queue: the channel class) */
    uint32_t pos;  /* position in it */
};

struct frontier {
    struct heap_pos at[SELECT_FRONTIER_MAX];
    uint32_t count;
};

typedef bool (*pos_before_fn)(const struct tq_state *s, const void *ctx, struct heap_pos a,
                              struct heap_pos b);

static bool frontier_push(struct frontier *f, const struct tq_state *s, const void *ctx,
                          pos_before_fn before, struct heap_pos x) {
    if (f->count == SELECT_FRONTIER_MAX) return false;
    uint32_t i = f->count++;
    while (i > 0 && before(s, ctx, x, f->at[(i - 1) / 2])) {
        f->at[i] = f->at[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    f->at[i] = x;
    return true;
}

static struct heap_pos frontier_pop(struct frontier *f, const struct tq_state *s, const void *ctx,
                                    pos_before_fn before) {
    TQ_ASSERT(f->count > 0);
    struct heap_pos top = f->at[0], x = f->at[--f->count];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= f->count) break;
        if (c + 1 < f->count && before(s, ctx, f->at[c + 1], f->at[c])) c++;
        if (!before(s, ctx, f->at[c], x)) break;
        f->at[i] = f->at[c];
        i = c;
    }
    if (f->count > 0) f->at[i] = x;
    return top;
}

/* Selection of the first cap in queue order by insertion into a sorted output: the whole
 * queue is read. The reference the best-first walk is checked against. */
static uint32_t queue_list_scan(const struct tq_state *s, const struct tq_queue *q,
                                uint64_t *ticket_ids_out, uint32_t cap) {
    uint32_t n = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        for (uint32_t i = 0; i < q->heap[k].count; i++) {
            uint32_t id = q->heap[k].ids[i];
            if (n == cap && !tq_st_queue_before(s, id, (uint32_t)ticket_ids_out[n - 1])) continue;
            uint32_t j = n < cap ? n : cap - 1;
            while (j > 0 && tq_st_queue_before(s, id, (uint32_t)ticket_ids_out[j - 1])) {
                ticket_ids_out[j] = ticket_ids_out[j - 1];
                j--;
            }
            ticket_ids_out[j] = id;
            if (n < cap) n++;
        }
    }
    return n;
}

static bool queue_pos_before(const struct tq_state *s, const void *ctx, struct heap_pos a,
                             struct heap_pos b) {
    const struct tq_queue *q = ctx;
    return tq_st_queue_before(s, q->heap[a.heap].ids[a.pos], q->heap[b.heap].ids[b.pos]);
}

uint32_t tq_state_queue_list(const struct tq_state *s, uint64_t tenant_id, uint64_t queue_id,
                             uint64_t *ticket_ids_out, uint32_t cap) {
    const struct tq_queue *q = tq_st_queue_get(s, tenant_id, queue_id);
    if (q == NULL || cap == 0) return 0;
    /* Each pop adds at most one entry net, so the frontier never exceeds classes + cap. */
    if (cap > SELECT_FRONTIER_MAX - TQ_CHANNEL_CLASS_COUNT) {
        return queue_list_scan(s, q, ticket_ids_out, cap);
    }
    struct frontier f;
    f.count = 0;
    for (uint32_t k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        if (q->heap[k].count > 0) {
            (void)frontier_push(&f, s, q, queue_pos_before, (struct heap_pos){k, 0});
        }
    }
    uint32_t n = 0;
    while (n < cap && f.count > 0) {
        struct heap_pos p = frontier_pop(&f, s, q, queue_pos_before);
        const struct tq_heap32 *h = &q->heap[p.heap];
        ticket_ids_out[n++] = h->ids[p.pos];
        for (uint32_t c = 2 * p.pos + 1; c <= 2 * p.pos + 2 && c < h->count; c++) {
            bool pushed = frontier_push(&f, s, q, queue_pos_before, (struct heap_pos){p.heap, c});
            TQ_ASSERT(pushed);
        }
    }
#ifdef TQ_DEBUG
    uint64_t *ref = tq_xalloc(cap * sizeof(*ref));
    TQ_ASSERT(queue_list_scan(s, q, ref, cap) == n);
    TQ_ASSERT(memcmp(ref, ticket_ids_out, n * sizeof(*ref)) == 0);
    tq_free(ref, cap * sizeof(*ref));
#endif
    return n;
}

enum tq_err tq_state_agent_get(const struct tq_state *s, uint64_t tenant_id, uint64_t agent_id,
                               struct tq_agent_view *out) {
    const struct tq_agent *a = tq_st_agent_get(s, tenant_id, agent_id);
    if (a == NULL) return TQ_ERR_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->agent_id = agent_id;
    out->tenant_id = a->tenant;
    out->name = a->name;
    out->presence = (enum tq_presence)a->presence;
    memcpy(out->capacity, a->capacity, sizeof(out->capacity));
    memcpy(out->load, a->load, sizeof(out->load));
    out->last_assigned_ms = a->last_assigned_ms;
    return TQ_OK;
}

uint32_t tq_state_agent_ids(const struct tq_state *s, uint64_t tenant_id, uint64_t *out,
                            uint32_t cap) {
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL) return 0;
    for (uint32_t i = 0; i < tn->agent_n && i < cap; i++)
        out[i] = tn->agent_ids[i];
    return tn->agent_n;
}

/* ---- SLA and consumers -------------------------------------------------------------------- */

/* The order of SLA nearest's answer: deadline, then ticket id, then metric (a total order, so
 * the page does not depend on the order entries are met in). */
static bool sla_due_before(const struct tq_sla_due *a, const struct tq_sla_due *b) {
    if (a->deadline_ms != b->deadline_ms) return a->deadline_ms < b->deadline_ms;
    if (a->ticket_id != b->ticket_id) return a->ticket_id < b->ticket_id;
    return a->metric < b->metric;
}

/* Adds ticket tid's running clocks to out (n entries, at most cap, sorted by sla_due_before),
 * keeping the cap first. */
static void sla_due_add(const struct tq_state *s, uint32_t tid, struct tq_sla_due *out, uint32_t *n,
                        uint32_t cap) {
    const struct tq_ticket *t = st_ticket(s, tid);
    for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
        if (t->sla_state[m] != TQ_SLA_RUNNING) continue;
        uint64_t d = tk_clock_deadline(t, (enum tq_sla_metric)m);
        if (d == 0) continue;
        struct tq_sla_due x = {tid, (enum tq_sla_metric)m, d};
        if (*n == cap && !sla_due_before(&x, &out[*n - 1])) continue;
        uint32_t j = *n < cap ? *n : cap - 1;
        while (j > 0 && sla_due_before(&x, &out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = x;
        if (*n < cap) (*n)++;
    }
}

/* Every node of the tenant's SLA index, in heap order: O(tickets of the tenant with a running
 * clock). The reference the best-first walk is checked against in debug builds, and the answer
 * for a page larger than the walk's frontier. */
static uint32_t sla_nearest_scan(const struct tq_state *s, const struct tq_slaidx *x,
                                 struct tq_sla_due *out, uint32_t cap) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < x->count; i++)
        sla_due_add(s, x->nodes[i].ticket, out, &n, cap);
    return n;
}

static bool sla_pos_before(const struct tq_state *s, const void *ctx, struct heap_pos a,
                           struct heap_pos b) {
    const struct tq_slaidx *x = ctx;
    return tq_st_slaidx_before(s, x->nodes[a.pos], x->nodes[b.pos]);
}

uint32_t tq_state_sla_nearest(const struct tq_state *s, uint64_t tenant_id, struct tq_sla_due *out,
                              uint32_t cap) {
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL || cap == 0) return 0;
    const struct tq_slaidx *x = &tn->sla;
    /* Each pop adds at most TQ_SLAIDX_ARITY - 1 entries net to the frontier and the walk pops
     * at most cap + 1 nodes (below), so the frontier never holds more than
     * 1 + (TQ_SLAIDX_ARITY - 1) * (cap + 1): cap <= 1,364 with 4,096 (TQ_LIST_LIMIT_MAX is
     * 1,000). */
    if (cap > (SELECT_FRONTIER_MAX - 1) / (TQ_SLAIDX_ARITY - 1) - 1) {
        return sla_nearest_scan(s, x, out, cap);
    }
    /* The tenant's SLA index is keyed by each ticket's earliest running deadline, in
     * (deadline, ticket) order: a popped ticket's entries are all at or after (its key, its
     * id, first metric), and so are every later ticket's. Once that is not before the cap-th
     * entry found, nothing later can enter the page. Every popped ticket adds its earliest
     * entry, in increasing order, so the walk stops after at most cap + 1 pops. */
    struct frontier f;
    f.count = 0;
    uint32_t n = 0, pops = 0;
    if (x->count > 0) (void)frontier_push(&f, s, x, sla_pos_before, (struct heap_pos){0, 0});
    while (f.count > 0) {
        struct heap_pos p = frontier_pop(&f, s, x, sla_pos_before);
        uint32_t tid = x->nodes[p.pos].ticket;
        struct tq_sla_due first = {tid, (enum tq_sla_metric)0,
                                   tq_st_ticket_sla_next(st_ticket(s, tid))};
        TQ_ASSERT(first.deadline_ms != 0);
        if (n == cap && !sla_due_before(&first, &out[n - 1])) break;
        sla_due_add(s, tid, out, &n, cap);
        pops++;
        TQ_ASSERT(pops <= cap);
        uint32_t first_child = TQ_SLAIDX_ARITY * p.pos + 1;
        for (uint32_t c = first_child; c < first_child + TQ_SLAIDX_ARITY && c < x->count; c++) {
            bool pushed = frontier_push(&f, s, x, sla_pos_before, (struct heap_pos){0, c});
            TQ_ASSERT(pushed);
        }
    }
#ifdef TQ_DEBUG
    struct tq_sla_due *ref = tq_xalloc(cap * sizeof(*ref));
    TQ_ASSERT(sla_nearest_scan(s, x, ref, cap) == n);
    for (uint32_t i = 0; i < n; i++) {
        TQ_ASSERT(ref[i].ticket_id == out[i].ticket_id && ref[i].metric == out[i].metric &&
                  ref[i].deadline_ms == out[i].deadline_ms);
    }
    tq_free(ref, cap * sizeof(*ref));
#endif
    return n;
}

uint64_t tq_state_consumer_lsn(const struct tq_state *s, uint64_t tenant_id, struct tq_str name) {
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL) return 0;
    for (uint32_t i = 0; i < tn->consumer_n; i++) {
        const struct tq_consumer *k = &tn->consumers[i];
        if (k->name.len == name.len && memcmp(k->name.ptr, name.ptr, name.len) == 0) return k->lsn;
    }
    return 0;
}

/* ---- analytics ---------------------------------------------------------------------------- */

static void stats_add(const struct tq_state *s, const struct tq_tenant *tn, uint32_t tenant_id,
                      struct tq_stats *out, struct tq_hist *fr, struct tq_hist *res) {
    out->tenant_count++;
    for (int i = 0; i < TQ_STATUS_COUNT; i++)
        out->tickets_by_status[i] += tn->by_status[i];
    out->ticket_count += tn->ticket_count;
    out->message_count += tn->message_count;
    out->customer_count += tn->customer_count;
    out->agent_count += tn->agent_n;
    out->queue_count += tn->queue_n;
    for (uint32_t i = 0; i < tn->queue_n; i++) {
        const struct tq_queue *q = st_queue(s, tn->queue_ids[i]);
        out->queued_tickets += q->heap[0].count + q->heap[1].count;
    }
    out->sla_breaches += tn->sla_breaches;
    out->sla_warnings += tn->sla_warnings;
    out->outbox_pending += tn->outbox_pending;
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
        out->messages_by_channel[i] += tn->by_channel[i];
    fr->count += tn->first_response.count;
    res->count += tn->resolution.count;
    for (uint32_t b = 0; b < TQ_HIST_BUCKETS; b++) {
        fr->buckets[b] += tn->first_response.buckets[b];
        res->buckets[b] += tn->resolution.buckets[b];
    }
    (void)tenant_id;
}

void tq_state_stats(const struct tq_state *s, uint64_t tenant_id, struct tq_stats *out) {
    memset(out, 0, sizeof(*out));
    struct tq_hist fr, res;
    memset(&fr, 0, sizeof(fr));
    memset(&res, 0, sizeof(res));
    if (tenant_id != 0) {
        const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
        if (tn != NULL) stats_add(s, tn, (uint32_t)tenant_id, out, &fr, &res);
    } else {
        uint32_t n = tq_slab_count(&s->tenants);
        for (uint32_t i = 1; i <= n; i++)
            stats_add(s, st_tenant(s, i), i, out, &fr, &res);
    }
    out->first_response_p50_ms = tq_st_hist_quantile(&fr, 500);
    out->first_response_p90_ms = tq_st_hist_quantile(&fr, 900);
    out->resolution_p50_ms = tq_st_hist_quantile(&res, 500);
    out->resolution_p90_ms = tq_st_hist_quantile(&res, 900);
    out->lsn = s->lsn;
}

void tq_state_hourly_messages(const struct tq_state *s, uint64_t tenant_id, uint64_t hour_start_ms,
                              uint64_t out[TQ_CHANNEL_COUNT]) {
    memset(out, 0, TQ_CHANNEL_COUNT * sizeof(uint64_t));
    const struct tq_tenant *tn = tq_st_tenant_get(s, tenant_id);
    if (tn == NULL) return;
    uint64_t hour = hour_start_ms / 3600000u;
    uint32_t slot = (uint32_t)(hour % TQ_HOURLY_SLOTS);
    if (tn->hour_of_slot[slot] != hour) return;
    for (int c = 0; c < TQ_CHANNEL_COUNT; c++)
        out[c] = tn->hourly[slot][c];
}

/* ---- invariants --------------------------------------------------------------------------- */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tq_error_set(error, TQ_ERR_INTERNAL, __VA_ARGS__);                                     \
            ok = false;                                                                            \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

bool tq_state_check_invariants(const struct tq_state *s, struct tq_error *error) {
    bool ok = true;
    uint32_t nt = tq_slab_count(&s->tickets);
    uint32_t na = tq_slab_count(&s->agents);
    uint32_t nq = tq_slab_count(&s->queues);
    uint32_t *load = tq_xcalloc((size_t)na + 1, 2 * sizeof(uint32_t));
    uint32_t *depth = tq_xcalloc((size_t)nq + 1, 2 * sizeof(uint32_t));
    uint32_t due_expected = 0;
    uint32_t ntn = tq_slab_count(&s->tenants);
    uint32_t *sla_expected = tq_xcalloc((size_t)ntn + 1, sizeof(uint32_t));
    for (uint32_t id = 1; id <= nt; id++) {
        const struct tq_ticket *t = st_ticket(s, id);
        unsigned cls = tq_channel_class_of((enum tq_channel)t->origin);
        CHECK(t->tenant != 0 && t->tenant < s->tenants.next_id, "ticket %u: tenant", id);
        CHECK(st_customer(s, t->customer)->tenant == t->tenant, "ticket %u: customer tenant", id);
        CHECK(st_queue(s, t->queue)->tenant == t->tenant, "ticket %u: queue tenant", id);
        if (t->assignee != 0) {
            CHECK(st_agent(s, t->assignee)->tenant == t->tenant, "ticket %u: agent tenant", id);
        }
        if (tk_merged_into(t) != 0) {
            CHECK(st_ticket(s, tk_merged_into(t))->tenant == t->tenant, "ticket %u: merge", id);
            CHECK(t->status == TQ_STATUS_CLOSED, "ticket %u: merged but not closed", id);
            CHECK(t->msg_count == 0, "ticket %u: merged ticket keeps messages", id);
        }
        if (tk_follow_up_of(t) != 0) {
            CHECK(st_ticket(s, tk_follow_up_of(t))->tenant == t->tenant, "ticket %u: follow-up",
                  id);
        }
        /* queue membership */
        bool should = tq_st_ticket_should_queue(t);
        const struct tq_tkidx *x = st_tkidx(s, id);
        CHECK(should == (x->queue_pos != 0), "ticket %u: queued=%d but should=%d", id,
              x->queue_pos != 0, should);
        if (should) {
            const struct tq_heap32 *h = &st_queue(s, t->queue)->heap[cls];
            CHECK(x->queue_pos <= h->count && h->ids[x->queue_pos - 1] == id,
                  "ticket %u: queue position", id);
            CHECK(x->qkey == tq_st_queue_key(t), "ticket %u: stale queue key", id);
            depth[t->queue * 2 + cls]++;
        }
        /* load */
        bool counts = tq_st_ticket_counts_load(t);
        CHECK(counts == ((t->flags & TQ_TF_IN_LOAD) != 0), "ticket %u: load flag", id);
        if (counts) load[t->assignee * 2 + cls]++;
        /* deadline index */
        uint64_t due = tq_st_ticket_due(s, t);
        if (due == UINT64_MAX) {
            CHECK(x->due_pos == 0, "ticket %u: in deadline index without a due item", id);
        } else {
            CHECK(x->due_pos != 0 && x->due_pos <= s->due_count, "ticket %u: not indexed", id);
            CHECK(s->due[x->due_pos - 1].ticket == id && s->due[x->due_pos - 1].due_ms == due,
                  "ticket %u: deadline entry stale", id);
            due_expected++;
        }
        /* every running clock with a target is in the index (its warning or breach is due) */
        for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
            if (t->sla_state[m] == TQ_SLA_RUNNING && tk_merged_into(t) == 0 &&
                tk_clock_deadline(t, (enum tq_sla_metric)m) != 0) {
                CHECK(due <= tk_clock_deadline(t, (enum tq_sla_metric)m),
                      "ticket %u: running clock %d not indexed", id, m);
            }
        }
        /* SLA index: exactly the tickets with a running clock that has a deadline, keyed at
         * the earliest (merged and closed tickets have none) */
        uint64_t sla_next = tq_st_ticket_sla_next(t);
        const struct tq_slaidx *sx = &st_tenant(s, t->tenant)->sla;
        if (sla_next == 0) {
            CHECK(t->sla_pos == 0, "ticket %u: in the SLA index without a running deadline", id);
        } else {
            CHECK(t->sla_pos != 0 && t->sla_pos <= sx->count, "ticket %u: not in the SLA index",
                  id);
            CHECK(sx->nodes[t->sla_pos - 1].ticket == id, "ticket %u: SLA index position", id);
            CHECK(sx->nodes[t->sla_pos - 1].key == tq_st_slaidx_key(sx, sla_next),
                  "ticket %u: SLA index key %u, deadline %llu (base %llu)", id,
                  sx->nodes[t->sla_pos - 1].key, (unsigned long long)sla_next,
                  (unsigned long long)sx->base);
            sla_expected[t->tenant]++;
        }
        for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
            uint64_t d = tk_clock_deadline(t, (enum tq_sla_metric)m);
            if (t->sla_state[m] == TQ_SLA_RUNNING && d != 0 && t->status != TQ_STATUS_CLOSED) {
                CHECK(sla_next != 0 && sla_next <= d,
                      "ticket %u: running clock %d not in the "
                      "SLA index",
                      id, m);
            }
        }
        /* messages */
        uint32_t count = 0, prev = UINT32_MAX, oldest = 0;
        for (uint32_t m = t->msg_tail; m != 0; m = st_message(s, m)->next) {
            CHECK(st_message(s, m)->ticket == id, "message %u: ticket", m);
            CHECK(m < prev, "ticket %u: messages out of order", id); /* newest first */
            prev = oldest = m;
            count++;
            CHECK(count <= t->msg_count, "ticket %u: message chain longer than count", id);
        }
        CHECK(count == t->msg_count, "ticket %u: message count", id);
        CHECK(t->msg_head == oldest, "ticket %u: oldest message", id);
    }
    CHECK(due_expected == s->due_count, "deadline index holds %u entries, expected %u",
          s->due_count, due_expected);
    for (uint32_t i = 0; i < s->due_count; i++) {
        if (i > 0) {
            const struct tq_duenode *p = &s->due[(i - 1) / 2], *c = &s->due[i];
            CHECK(p->due_ms < c->due_ms || (p->due_ms == c->due_ms && p->ticket < c->ticket),
                  "deadline heap order at %u", i);
        }
    }
    for (uint32_t tid = 1; tid <= ntn; tid++) {
        const struct tq_slaidx *sx = &st_tenant(s, tid)->sla;
        CHECK(sx->count == sla_expected[tid], "tenant %u: SLA index holds %u, expected %u", tid,
              sx->count, sla_expected[tid]);
        CHECK(sx->count <= sx->cap, "tenant %u: SLA index count", tid);
        for (uint32_t i = 0; i < sx->count; i++) {
            CHECK(st_ticket(s, sx->nodes[i].ticket)->tenant == tid,
                  "tenant %u: SLA index holds another tenant's ticket", tid);
            if (i > 0) {
                CHECK(!tq_st_slaidx_before(s, sx->nodes[i], sx->nodes[(i - 1) / TQ_SLAIDX_ARITY]),
                      "tenant %u: SLA index heap order at %u", tid, i);
            }
        }
    }
    for (uint32_t a = 1; a <= na; a++) {
        const struct tq_agent *ag = st_agent(s, a);
        for (int k = 0; k < 2; k++) {
            CHECK(ag->load[k] == load[a * 2 + k], "agent %u: load[%d] %u, assigned %u", a, k,
                  ag->load[k], load[a * 2 + k]);
        }
    }
    for (uint32_t q = 1; q <= nq; q++) {
        const struct tq_queue *qu = st_queue(s, q);
        for (int k = 0; k < 2; k++) {
            CHECK(qu->heap[k].count == depth[q * 2 + k], "queue %u: depth", q);
            for (uint32_t i = 1; i < qu->heap[k].count; i++) {
                CHECK(!tq_st_queue_before(s, qu->heap[k].ids[i], qu->heap[k].ids[(i - 1) / 2]),
                      "queue %u: heap order", q);
            }
        }
        if (!tq_st_qage_check(s, q, error)) {
            ok = false;
            goto done;
        }
    }
    for (uint32_t c = 1; c < s->customers.next_id; c++) {
        const struct tq_customer *cu = st_customer(s, c);
        for (uint32_t t = cu->ticket_head; t != 0; t = st_ticket(s, t)->customer_next) {
            CHECK(st_ticket(s, t)->customer == c, "customer %u: ticket chain", c);
        }
        for (uint32_t x = cu->ident_head; x != 0; x = st_identity(s, x)->next) {
            CHECK(st_identity(s, x)->customer == c, "customer %u: identity chain", c);
            CHECK(st_identity(s, x)->tenant == cu->tenant, "customer %u: identity tenant", c);
        }
        if (cu->merged_into != 0) {
            CHECK(st_customer(s, cu->merged_into)->tenant == cu->tenant, "customer %u merge", c);
        }
        if (cu->erased) {
            CHECK(cu->ident_head == 0 && cu->ident_count == 0, "customer %u: erased, identities",
                  c);
            /* (subjects set by agents after the erasure are legitimate: not checked) */
            CHECK(cu->name.len == 0 && cu->language.len == 0, "customer %u: erased, name", c);
        }
    }
    /* Identities: a live one is found by its key and sits in its customer's chain; an erased
     * one (ext_len 0) is in no chain and no table, with hash 0; the table holds exactly the
     * live ones. */
    uint64_t live_identities = 0;
    for (uint32_t x = 1; x < s->identities.next_id; x++) {
        const struct tq_identity *id = st_identity(s, x);
        if (id->ext_len == 0) {
            CHECK(id->hash == 0 && id->next == 0, "identity %u: erased but hashed/chained", x);
            CHECK(st_customer(s, id->customer)->erased, "identity %u: erased, customer not", x);
            continue;
        }
        live_identities++;
        CHECK(!st_customer(s, id->customer)->erased, "identity %u: customer erased", x);
        CHECK(tq_st_identity_lookup(s, id->tenant, (enum tq_channel)id->channel,
                                    (struct tq_str){ident_ext(id), id->ext_len}) == x,
              "identity %u: not found by its key", x);
    }
    CHECK(s->ident_index.count == live_identities, "identity table count");
    for (uint32_t t = 1; t < s->tenants.next_id; t++) {
        const struct tq_tenant *tn = st_tenant(s, t);
        for (int ch = 0; ch < TQ_CHANNEL_COUNT; ch++) {
            uint64_t prev_until = 0, n = 0;
            for (uint32_t e = tn->ob_leased[ch].head; e != 0; e = st_obentry(s, e)->next, n++) {
                const struct tq_obentry *x = st_obentry(s, e);
                CHECK(x->leased && x->tenant == t && x->channel == ch, "outbox %u: lease list", e);
                CHECK(x->lease_until_ms >= prev_until, "outbox %u: lease order", e);
                prev_until = x->lease_until_ms;
            }
            CHECK(n == tn->ob_leased[ch].count, "tenant %u: leased count", t);
            n = 0;
            for (uint32_t e = tn->ob_avail[ch].head; e != 0; e = st_obentry(s, e)->next, n++) {
                const struct tq_obentry *x = st_obentry(s, e);
                CHECK(!x->leased && x->tenant == t && x->channel == ch, "outbox %u: list", e);
            }
            CHECK(n == tn->ob_avail[ch].count, "tenant %u: available count", t);
        }
    }
    for (uint32_t e = 1; e < s->obentries.next_id; e++) {
        const struct tq_obentry *x = st_obentry(s, e);
        if (x->message == 0) continue;
        const struct tq_message *m = st_message(s, x->message);
        CHECK(st_ticket(s, m->ticket)->tenant == x->tenant, "outbox %u: tenant", e);
        CHECK(msg_delivery(m) == TQ_DELIVERY_QUEUED, "outbox %u: message not queued", e);
        /* the entry counts the takes; the message catches up when the entry goes */
        CHECK(x->attempts >= msg_attempts(m), "outbox %u: attempts %u, message ahead at %u", e,
              x->attempts, msg_attempts(m));
    }
done:
    tq_free(load, ((size_t)na + 1) * 2 * sizeof(uint32_t));
    tq_free(depth, ((size_t)nq + 1) * 2 * sizeof(uint32_t));
    tq_free(sla_expected, ((size_t)ntn + 1) * sizeof(uint32_t));
    return ok;
}
