/* bench/peer_ticketq.c: ticketq as a ticketq-bench system (contract and data model in
 * peer_ticketq.h; the mapping of the peer workloads is documented in docs/performance-peers.md).
 *
 * Owns: one control client (blocking: load, stats) and one libticketq client per bench
 * connection, each with a FIFO of the operations whose requests are in flight, and for
 * --batch B an accumulator of ingests not yet sent.
 *
 * Invariants:
 *   - Responses on a connection come back in submission order (libticketq checks the ids), so
 *     the FIFO entry at the head always describes the next response. An entry is pushed exactly
 *     when its request is submitted.
 *   - Every driver tag completes exactly once: an ingest when its Ingest (or its Batch)
 *     answers, a claim-reply when its Claim-with-reply answers (one request, one round trip),
 *     a read when it answers.
 *   - FIFO entries (claims count once, a batch counts B) never exceed the pipeline depth, the
 *     driver's bound on operations in flight per connection, plus the accumulator's B.
 *   - Bytes from the server are decoded by libticketq; result fields are checked, never
 *     asserted (a Claim answer without a ticket or message id is a failed operation, not a
 *     crash).
 *
 * Flush: tq_client_flush writes everything queued (reading responses meanwhile, so it cannot
 * deadlock against the server); with loopback and requests of a few hundred bytes it returns
 * at once, so the driver's "never blocks" holds in practice, not by construction.
 */
#include "peer_ticketq.h"

#include "ticketq.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLA_MS_HOUR               (3600u * 1000u)
#define DASHBOARD_TICKET_MESSAGES 20u

enum entry_kind { ENTRY_INGEST, ENTRY_CLAIM, ENTRY_READ, ENTRY_BATCH_MEMBER };

struct entry {
    enum entry_kind kind;
    uint32_t batch_count; /* ENTRY_BATCH_MEMBER at a batch's head: its size; else 0 */
    uint32_t agent;       /* ENTRY_CLAIM: the agent (index 1..500), for diagnostics */
    uint64_t tag;
};

struct ticketq_system {
    struct tq_bench_system base;
    char *addr;
    char *token;
    uint32_t pipeline;
    uint32_t batch;
    struct tq_client *control;
    uint64_t tenant_id;
    uint64_t queue_ids[TQ_WORKLOAD_QUEUES];
    uint64_t agent_ids[TQ_WORKLOAD_AGENTS + 1]; /* index 1..500 */
    uint64_t *ticket_ids;                       /* backlog ticket t -> id, index 1..backlog */
    uint64_t backlog;
    bool loaded;
    uint32_t load_serial;
    uint64_t load_lsn;        /* highest LSN the load's answers named */
    tq_ticketq_ack_fn ack_fn; /* fanout: called per acknowledged ingest */
    void *ack_ctx;
};

struct tq_bench_conn {
    struct ticketq_system *sys;
    struct tq_client *client;
    struct entry *fifo;
    uint32_t fifo_cap, fifo_head, fifo_count;
    struct tq_bench_op *acc; /* ingests waiting for a full batch */
    uint64_t *acc_tags;
    uint32_t acc_count;
    /* A Batch answer whose members did not all fit in one poll_completions call. */
    Ticketq__Response *partial;
    uint32_t partial_next, partial_count;
    enum tq_err partial_status; /* batch-level status (TQ_OK: use each member's result) */
};

static struct ticketq_system *sys_of(void *ctx) {
    return ctx;
}

/* Tells the ack hook (if any) that the ingest of tag succeeded with answer r. */
static void report_ack(const struct ticketq_system *s, uint64_t tag, const Ticketq__Response *r) {
    if (s->ack_fn == NULL || r->result_case != TICKETQ__RESPONSE__RESULT_IDS ||
        !r->ids->has_message_id) {
        return;
    }
    s->ack_fn(s->ack_ctx, tag, r->ids->message_id, tq_bench_now_ns());
}

int tq_ticketq_priority_of_tier(uint32_t tier) {
    static const int map[TQ_WORKLOAD_PRIORITIES] = {
        TICKETQ__PRIORITY__URGENT, TICKETQ__PRIORITY__HIGH, TICKETQ__PRIORITY__NORMAL};
    return tier < TQ_WORKLOAD_PRIORITIES ? map[tier] : TICKETQ__PRIORITY__NORMAL;
}

/* The generated structs hold char * for strings the library only reads. */
static char *mut(const char *s) {
    union {
        const char *c;
        char *m;
    } u = {.c = s};
    return u.m;
}

static enum tq_err connect_client(struct ticketq_system *s, uint32_t inflight,
                                  struct tq_client **out, struct tq_error *error) {
    struct tq_client_options o = {
        .addr = s->addr,
        .token = s->token,
        .io_timeout_ms = 120000,
        .inflight_max = inflight,
    };
    enum tq_err rc = tq_client_connect(&o, out, error);
    if (rc != TQ_OK) return rc;
    if (s->tenant_id != 0 && tq_client_identity(*out)->role == TICKETQ__ROLE__SERVER_ADMIN) {
        tq_client_set_tenant(*out, s->tenant_id);
    }
    return TQ_OK;
}

/* ---- requests ---------------------------------------------------------------------------- */

/* An Ingest request for op, with storage owned by the caller's struct. */
struct ingest_req {
    Ticketq__Request req;
    Ticketq__Ingest in;
};

static void build_ingest(const struct ticketq_system *s, const struct tq_bench_op *op,
                         struct ingest_req *r) {
    ticketq__request__init(&r->req);
    ticketq__ingest__init(&r->in);
    r->in.channel = (Ticketq__Channel)op->channel;
    r->in.from = mut(op->external_id);
    r->in.body = mut(op->body);
    r->in.has_queue_id = true;
    r->in.queue_id = s->queue_ids[op->channel % TQ_WORKLOAD_QUEUES];
    r->in.has_priority = true;
    r->in.priority = (Ticketq__Priority)tq_ticketq_priority_of_tier(op->tier);
    r->req.op_case = TICKETQ__REQUEST__OP_INGEST;
    r->req.ingest = &r->in;
}

static void fifo_push(struct tq_bench_conn *c, enum entry_kind kind, uint64_t tag, uint32_t agent,
                      uint32_t batch_count) {
    TQ_ASSERT(c->fifo_count < c->fifo_cap);
    struct entry *e = &c->fifo[(c->fifo_head + c->fifo_count) % c->fifo_cap];
    e->kind = kind;
    e->tag = tag;
    e->agent = agent;
    e->batch_count = batch_count;
    c->fifo_count++;
}

static struct entry fifo_pop(struct tq_bench_conn *c) {
    TQ_ASSERT(c->fifo_count > 0);
    struct entry e = c->fifo[c->fifo_head];
    c->fifo_head = (c->fifo_head + 1) % c->fifo_cap;
    c->fifo_count--;
    return e;
}

/* Sends the accumulated ingests as one Batch (or one Ingest if there is just one). */
static enum tq_err send_accumulated(struct tq_bench_conn *c, struct tq_error *error) {
    if (c->acc_count == 0) return TQ_OK;
    struct ticketq_system *s = c->sys;
    enum tq_err rc;
    if (c->acc_count == 1) {
        struct ingest_req r;
        build_ingest(s, &c->acc[0], &r);
        rc = tq_client_submit(c->client, &r.req, NULL, error);
        if (rc != TQ_OK) return rc;
        fifo_push(c, ENTRY_INGEST, c->acc_tags[0], 0, 0);
        c->acc_count = 0;
        return TQ_OK;
    }
    uint32_t n = c->acc_count;
    struct ingest_req *reqs = tq_xalloc(n * sizeof(*reqs));
    Ticketq__Request **ops = tq_xalloc(n * sizeof(*ops));
    for (uint32_t i = 0; i < n; i++) {
        build_ingest(s, &c->acc[i], &reqs[i]);
        reqs[i].req.id = i + 1;
        ops[i] = &reqs[i].req;
    }
    Ticketq__Batch batch = TICKETQ__BATCH__INIT;
    batch.n_ops = n;
    batch.ops = ops;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_BATCH;
    req.batch = &batch;
    rc = tq_client_submit(c->client, &req, NULL, error);
    tq_free(ops, n * sizeof(*ops));
    tq_free(reqs, n * sizeof(*reqs));
    if (rc != TQ_OK) return rc;
    for (uint32_t i = 0; i < n; i++) {
        fifo_push(c, ENTRY_BATCH_MEMBER, c->acc_tags[i], 0, i == 0 ? n : 0);
    }
    c->acc_count = 0;
    return TQ_OK;
}

static enum tq_err submit_claim(struct tq_bench_conn *c, const struct tq_bench_op *op, uint64_t tag,
                                struct tq_error *error) {
    struct ticketq_system *s = c->sys;
    uint64_t queue_id = s->queue_ids[op->queue % TQ_WORKLOAD_QUEUES];
    Ticketq__ClaimReply reply = TICKETQ__CLAIM_REPLY__INIT;
    reply.body = mut(tq_workload_body_out);
    reply.has_set_status = true;
    reply.set_status = TICKETQ__STATUS__PENDING;
    Ticketq__Claim claim = TICKETQ__CLAIM__INIT;
    claim.has_agent_id = true;
    claim.agent_id = s->agent_ids[op->agent];
    claim.n_queue_ids = 1;
    claim.queue_ids = &queue_id;
    claim.reply = &reply;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_CLAIM;
    req.claim = &claim;
    enum tq_err rc = tq_client_submit(c->client, &req, NULL, error);
    if (rc != TQ_OK) return rc;
    fifo_push(c, ENTRY_CLAIM, tag, op->agent, 0);
    return TQ_OK;
}

static enum tq_err submit_read(struct tq_bench_conn *c, const struct tq_bench_op *op, uint64_t tag,
                               struct tq_error *error) {
    struct ticketq_system *s = c->sys;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    Ticketq__TicketGet get = TICKETQ__TICKET_GET__INIT;
    Ticketq__QueueList list = TICKETQ__QUEUE_LIST__INIT;
    Ticketq__SlaNearest sla = TICKETQ__SLA_NEAREST__INIT;
    switch (op->kind) {
    case TQ_OP_GET_TICKET: {
        uint64_t t = op->ticket_id >= 1 && op->ticket_id <= s->backlog ? op->ticket_id : 1;
        get.ticket_id = s->ticket_ids[t];
        /* The last 20 messages (as the Redis peer's LRANGE -20 -1 and PostgreSQL's ORDER BY
         * id DESC LIMIT 20). */
        get.has_message_limit = true;
        get.message_limit = DASHBOARD_TICKET_MESSAGES;
        get.has_last = true;
        get.last = true;
        req.op_case = TICKETQ__REQUEST__OP_TICKET_GET;
        req.ticket_get = &get;
        break;
    }
    case TQ_OP_LIST_QUEUE:
        list.queue_id = s->queue_ids[op->queue % TQ_WORKLOAD_QUEUES];
        list.has_limit = true;
        list.limit = TQ_WORKLOAD_DASHBOARD_PAGE;
        req.op_case = TICKETQ__REQUEST__OP_QUEUE_LIST;
        req.queue_list = &list;
        break;
    case TQ_OP_SLA_NEAREST:
        sla.has_limit = true;
        sla.limit = TQ_WORKLOAD_DASHBOARD_PAGE;
        req.op_case = TICKETQ__REQUEST__OP_SLA_NEAREST;
        req.sla_nearest = &sla;
        break;
    case TQ_OP_INGEST:
    case TQ_OP_CLAIM_REPLY:
    default: TQ_ASSERT(false);
    }
    enum tq_err rc = tq_client_submit(c->client, &req, NULL, error);
    if (rc != TQ_OK) return rc;
    fifo_push(c, ENTRY_READ, tag, 0, 0);
    return TQ_OK;
}

/* ---- the bench system callbacks ---------------------------------------------------------- */

static enum tq_err conn_open(void *ctx, uint32_t conn_index, struct tq_bench_conn **conn_out,
                             struct tq_error *error) {
    (void)conn_index;
    struct ticketq_system *s = sys_of(ctx);
    if (!s->loaded) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                            "ticketq: the initial state is loaded by each run (--load)");
    }
    struct tq_bench_conn *c = tq_xcalloc(1, sizeof(*c));
    c->sys = s;
    c->fifo_cap = s->pipeline + s->batch + 1;
    c->fifo = tq_xcalloc(c->fifo_cap, sizeof(*c->fifo));
    c->acc = tq_xcalloc(s->batch, sizeof(*c->acc));
    c->acc_tags = tq_xcalloc(s->batch, sizeof(*c->acc_tags));
    enum tq_err rc = connect_client(s, c->fifo_cap + 1, &c->client, error);
    if (rc != TQ_OK) {
        tq_free(c->acc_tags, s->batch * sizeof(*c->acc_tags));
        tq_free(c->acc, s->batch * sizeof(*c->acc));
        tq_free(c->fifo, c->fifo_cap * sizeof(*c->fifo));
        tq_free(c, sizeof(*c));
        return rc;
    }
    *conn_out = c;
    return TQ_OK;
}

static int conn_fd(struct tq_bench_conn *c) {
    return tq_client_fd(c->client);
}

static enum tq_err send_op(struct tq_bench_conn *c, const struct tq_bench_op *op, uint64_t tag,
                           struct tq_error *error) {
    struct ticketq_system *s = c->sys;
    if (op->kind == TQ_OP_INGEST) {
        c->acc[c->acc_count] = *op;
        c->acc_tags[c->acc_count] = tag;
        c->acc_count++;
        if (c->acc_count == s->batch) return send_accumulated(c, error);
        return TQ_OK;
    }
    /* Keep submission order = FIFO order: the waiting ingests go first. */
    enum tq_err rc = send_accumulated(c, error);
    if (rc != TQ_OK) return rc;
    if (op->kind == TQ_OP_CLAIM_REPLY) return submit_claim(c, op, tag, error);
    return submit_read(c, op, tag, error);
}

static enum tq_err flush(struct tq_bench_conn *c, bool *pending_out, struct tq_error *error) {
    *pending_out = false;
    enum tq_err rc = send_accumulated(c, error);
    if (rc != TQ_OK) return rc;
    return tq_client_flush(c->client, error);
}

static void complete(struct tq_bench_completion *out, uint32_t *count, uint64_t tag,
                     enum tq_err status) {
    out[*count].tag = tag;
    out[*count].status = status;
    (*count)++;
}

/* Completes the members of c->partial that fit in out[..max); frees it when all are done. */
static void drain_partial(struct tq_bench_conn *c, struct tq_bench_completion *out, uint32_t max,
                          uint32_t *count) {
    struct tq_error op_error;
    while (c->partial != NULL && *count < max) {
        uint32_t i = c->partial_next++;
        struct entry m = fifo_pop(c);
        TQ_ASSERT(m.kind == ENTRY_BATCH_MEMBER);
        enum tq_err st = c->partial_status;
        if (st == TQ_OK) st = tq_client_response_error(c->partial->batch->results[i], &op_error);
        if (st == TQ_OK) report_ack(c->sys, m.tag, c->partial->batch->results[i]);
        complete(out, count, m.tag, st);
        if (c->partial_next == c->partial_count) {
            tq_client_response_free(c->partial);
            c->partial = NULL;
        }
    }
}

static enum tq_err poll_completions(struct tq_bench_conn *c, struct tq_bench_completion *out,
                                    uint32_t max, uint32_t *count_out, struct tq_error *error) {
    *count_out = 0;
    enum tq_err rc = TQ_OK;
    drain_partial(c, out, max, count_out);
    while (*count_out < max && c->fifo_count > 0 && tq_client_inflight(c->client) > 0) {
        Ticketq__Response *resp = NULL;
        rc = tq_client_try_collect(c->client, &resp, error);
        if (rc != TQ_OK || resp == NULL) break;
        struct tq_error op_error;
        enum tq_err status = tq_client_response_error(resp, &op_error);
        struct entry e = fifo_pop(c);
        switch (e.kind) {
        case ENTRY_INGEST:
            if (status == TQ_OK) report_ack(c->sys, e.tag, resp);
            complete(out, count_out, e.tag, status);
            break;
        case ENTRY_READ: complete(out, count_out, e.tag, status); break;
        case ENTRY_CLAIM: {
            /* Claim-and-reply: a success names the claimed ticket and the reply's message. */
            bool shaped = resp->result_case == TICKETQ__RESPONSE__RESULT_IDS &&
                          resp->ids->has_ticket_id && resp->ids->ticket_id != 0 &&
                          resp->ids->has_message_id && resp->ids->message_id != 0;
            complete(out, count_out, e.tag,
                     status != TQ_OK ? status
                     : shaped        ? TQ_OK
                                     : TQ_ERR_CORRUPT);
            break;
        }
        case ENTRY_BATCH_MEMBER: {
            /* The head member was popped; put it back and let drain_partial hand out all n
             * members as room allows (a batch may be larger than one call's max). */
            TQ_ASSERT(e.batch_count > 0);
            c->fifo_head = (c->fifo_head + c->fifo_cap - 1) % c->fifo_cap;
            c->fifo_count++;
            bool shaped = resp->result_case == TICKETQ__RESPONSE__RESULT_BATCH &&
                          resp->batch->n_results == e.batch_count;
            c->partial_status = status != TQ_OK ? status : shaped ? TQ_OK : TQ_ERR_CORRUPT;
            c->partial = resp;
            c->partial_next = 0;
            c->partial_count = e.batch_count;
            resp = NULL;
            drain_partial(c, out, max, count_out);
            break;
        }
        }
        tq_client_response_free(resp);
        if (rc != TQ_OK) break;
    }
    return rc;
}

static void conn_close(struct tq_bench_conn *c) {
    if (c == NULL) return;
    uint32_t batch = c->sys->batch;
    tq_client_response_free(c->partial);
    tq_client_close(c->client);
    tq_free(c->acc_tags, batch * sizeof(*c->acc_tags));
    tq_free(c->acc, batch * sizeof(*c->acc));
    tq_free(c->fifo, c->fifo_cap * sizeof(*c->fifo));
    tq_free(c, sizeof(*c));
}

enum tq_err tq_ticketq_counts(struct tq_bench_system *system, struct tq_ticketq_counts *out,
                              struct tq_error *error) {
    struct ticketq_system *s = sys_of(system->ctx);
    memset(out, 0, sizeof(*out));
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_stats(s->control, &resp, error);
    if (rc == TQ_OK &&
        (resp->result_case != TICKETQ__RESPONSE__RESULT_STATS || resp->stats == NULL)) {
        rc = tq_error_set(error, TQ_ERR_CORRUPT, "ticketq: Stats answered without stats");
    }
    if (rc == TQ_OK) {
        const Ticketq__StatsResult *st = resp->stats;
        out->tickets = st->tickets;
        out->messages = st->messages;
        out->customers = st->customers;
        out->queued_tickets = st->queued_tickets;
        out->sla_breaches = st->sla_breaches;
    }
    tq_client_response_free(resp);
    return rc;
}

static enum tq_err stats(void *ctx, struct tq_bench_stats *out, struct tq_error *error) {
    struct ticketq_system *s = sys_of(ctx);
    struct tq_ticketq_counts counts;
    enum tq_err rc = tq_ticketq_counts(&s->base, &counts, error);
    if (rc != TQ_OK) return rc;
    out->queue_depth = counts.queued_tickets;
    out->breached = counts.sla_breaches;
    return TQ_OK;
}

/* ---- create, load, destroy --------------------------------------------------------------- */

enum tq_err tq_ticketq_system_create(const struct tq_ticketq_options *options,
                                     struct tq_bench_system **system_out, struct tq_error *error) {
    *system_out = NULL;
    if (options->batch < 1 || options->batch > TQ_TICKETQ_BATCH_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "ticketq: --batch must be 1..%u",
                            TQ_TICKETQ_BATCH_MAX);
    }
    if (options->token == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "ticketq: a token is needed (--token, --token-file or TICKETQ_TOKEN)");
    }
    struct ticketq_system *s = tq_xcalloc(1, sizeof(*s));
    s->addr = options->addr != NULL ? tq_strdup(options->addr) : NULL;
    s->token = tq_strdup(options->token);
    s->pipeline = options->pipeline;
    s->batch = options->batch;
    s->base = (struct tq_bench_system){
        .name = "ticketq",
        .ctx = s,
        .conn_open = conn_open,
        .conn_fd = conn_fd,
        .send_op = send_op,
        .flush = flush,
        .poll_completions = poll_completions,
        .conn_close = conn_close,
        .stats = stats,
    };
    enum tq_err rc = connect_client(s, TQ_TICKETQ_LOAD_INFLIGHT + 1, &s->control, error);
    if (rc == TQ_OK) {
        Ticketq__Role role = tq_client_identity(s->control)->role;
        if (role == TICKETQ__ROLE__TENANT_ADMIN) {
            s->tenant_id = tq_client_identity(s->control)->tenant_id;
        } else if (role != TICKETQ__ROLE__SERVER_ADMIN) {
            rc = tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                              "ticketq: the bench needs a server-admin or tenant-admin token");
        }
    }
    if (rc != TQ_OK) {
        tq_ticketq_system_destroy(&s->base);
        return rc;
    }
    *system_out = &s->base;
    return TQ_OK;
}

void tq_ticketq_system_destroy(struct tq_bench_system *system) {
    if (system == NULL) return;
    struct ticketq_system *s = sys_of(system->ctx);
    tq_client_close(s->control);
    if (s->ticket_ids != NULL) tq_free(s->ticket_ids, (s->backlog + 1) * sizeof(*s->ticket_ids));
    if (s->addr != NULL) tq_free(s->addr, strlen(s->addr) + 1);
    if (s->token != NULL) {
        size_t n = strlen(s->token);
        memset(s->token, 0, n);
        tq_free(s->token, n + 1);
    }
    tq_free(s, sizeof(*s));
}

static enum tq_err set_sla_policy(struct ticketq_system *s, struct tq_error *error) {
    /* Index = wire Priority (LOW, NORMAL, HIGH, URGENT); 0 = no target. */
    uint64_t first_reply[4] = {0, 24u * SLA_MS_HOUR, 4u * SLA_MS_HOUR, 1u * SLA_MS_HOUR};
    for (uint32_t tier = 0; tier < TQ_WORKLOAD_PRIORITIES; tier++) {
        TQ_ASSERT(first_reply[tq_ticketq_priority_of_tier(tier)] == tq_workload_sla_ms(tier));
    }
    Ticketq__SlaTargets targets = TICKETQ__SLA_TARGETS__INIT;
    targets.n_first_reply_ms = 4;
    targets.first_reply_ms = first_reply;
    Ticketq__SlaPolicy policy = TICKETQ__SLA_POLICY__INIT;
    policy.name = mut("peer-workloads");
    policy.targets = &targets;
    Ticketq__SlaPolicy *policies[1] = {&policy};
    Ticketq__SlaPoliciesSet set = TICKETQ__SLA_POLICIES_SET__INIT;
    set.n_policies = 1;
    set.policies = policies;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_SLA_POLICIES_SET;
    req.sla_policies_set = &set;
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_call(s->control, &req, &resp, error);
    tq_client_response_free(resp);
    return rc;
}

/* One load batch: backlog tickets [first, first + count). */
struct load_batch {
    uint64_t first;
    uint32_t count;
};

static void load_op(uint64_t t, uint64_t customers, struct tq_bench_op *op) {
    struct tq_workload_ticket ticket;
    tq_workload_ticket(t, customers, &ticket);
    memset(op, 0, sizeof(*op));
    op->kind = TQ_OP_INGEST;
    op->channel = ticket.queue;
    op->tier = ticket.priority;
    if (t <= customers) {
        snprintf(op->external_id, sizeof(op->external_id), "ext-%" PRIu64, t);
    } else {
        snprintf(op->external_id, sizeof(op->external_id), "bl-%" PRIu64, t);
    }
    op->body = tq_workload_body_in;
    op->body_bytes = TQ_WORKLOAD_BODY_BYTES;
}

static enum tq_err submit_load_batch(struct ticketq_system *s, uint64_t customers,
                                     const struct load_batch *b, struct tq_error *error) {
    struct tq_bench_op ops[TQ_TICKETQ_LOAD_BATCH];
    struct ingest_req reqs[TQ_TICKETQ_LOAD_BATCH];
    Ticketq__Request *ptrs[TQ_TICKETQ_LOAD_BATCH];
    TQ_ASSERT(b->count <= TQ_TICKETQ_LOAD_BATCH);
    for (uint32_t i = 0; i < b->count; i++) {
        load_op(b->first + i, customers, &ops[i]);
        build_ingest(s, &ops[i], &reqs[i]);
        reqs[i].req.id = i + 1;
        ptrs[i] = &reqs[i].req;
    }
    Ticketq__Batch batch = TICKETQ__BATCH__INIT;
    batch.n_ops = b->count;
    batch.ops = ptrs;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_BATCH;
    req.batch = &batch;
    return tq_client_submit(s->control, &req, NULL, error);
}

static enum tq_err collect_load_batch(struct ticketq_system *s, const struct load_batch *b,
                                      struct tq_error *error) {
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_collect(s->control, &resp, error);
    if (rc != TQ_OK) return rc;
    rc = tq_client_response_error(resp, error);
    if (rc == TQ_OK && resp->has_lsn && resp->lsn > s->load_lsn) s->load_lsn = resp->lsn;
    if (rc == TQ_OK && (resp->result_case != TICKETQ__RESPONSE__RESULT_BATCH ||
                        resp->batch->n_results != b->count)) {
        rc = tq_error_set(error, TQ_ERR_CORRUPT, "ticketq load: batch answer of the wrong shape");
    }
    for (uint32_t i = 0; rc == TQ_OK && i < b->count; i++) {
        const Ticketq__Response *r = resp->batch->results[i];
        rc = tq_client_response_error(r, error);
        if (rc != TQ_OK) break;
        if (r->result_case != TICKETQ__RESPONSE__RESULT_IDS || !r->ids->has_ticket_id ||
            !r->ids->has_ticket_created || !r->ids->ticket_created) {
            /* Each backlog ticket must be a new ticket of its own: a customer appearing twice
             * would merge two backlog tickets into one. */
            rc = tq_error_set(error, TQ_ERR_CORRUPT,
                              "ticketq load: backlog ticket %" PRIu64 " was not created",
                              b->first + i);
            break;
        }
        s->ticket_ids[b->first + i] = r->ids->ticket_id;
        if (r->has_lsn && r->lsn > s->load_lsn) s->load_lsn = r->lsn;
    }
    tq_client_response_free(resp);
    return rc;
}

enum tq_err tq_ticketq_load(struct tq_bench_system *system, uint64_t customers, uint64_t backlog,
                            void (*progress)(uint64_t done), struct tq_error *error) {
    struct ticketq_system *s = sys_of(system->ctx);
    if (backlog < customers) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "ticketq: --backlog %" PRIu64 " < --customers %" PRIu64
                            ": the backlog's senders create the customers",
                            backlog, customers);
    }
    if (s->loaded) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION, "ticketq: already loaded");
    }
    struct tq_client_ids ids;
    enum tq_err rc = TQ_OK;
    if (tq_client_identity(s->control)->role == TICKETQ__ROLE__SERVER_ADMIN) {
        char name[64];
        snprintf(name, sizeof(name), "bench-%ld-%u", (long)getpid(), s->load_serial++);
        rc = tq_client_tenant_create(s->control, name, &ids, error);
        if (rc != TQ_OK) return rc;
        s->tenant_id = ids.tenant_id;
        tq_client_set_tenant(s->control, s->tenant_id);
    }
    rc = set_sla_policy(s, error);
    if (rc != TQ_OK) return rc;
    static const char *const queue_names[TQ_WORKLOAD_QUEUES] = {"email", "sms", "whatsapp"};
    for (uint32_t q = 0; q < TQ_WORKLOAD_QUEUES; q++) {
        char name[64];
        snprintf(name, sizeof(name), "%s-%u", queue_names[q], s->load_serial);
        rc = tq_client_queue_create(s->control, name, false, &ids, error);
        if (rc != TQ_OK) return rc;
        s->queue_ids[q] = ids.queue_id;
    }
    for (uint32_t a = 1; a <= TQ_WORKLOAD_AGENTS; a++) {
        char name[32];
        snprintf(name, sizeof(name), "agent-%u", a);
        rc = tq_client_agent_create(s->control, name, TQ_TICKETQ_AGENT_CAPACITY,
                                    TQ_TICKETQ_AGENT_CAPACITY, &ids, error);
        if (rc != TQ_OK) return rc;
        s->agent_ids[a] = ids.agent_id;
    }
    s->backlog = backlog;
    s->ticket_ids = tq_xcalloc(backlog + 1, sizeof(*s->ticket_ids));
    struct load_batch window[TQ_TICKETQ_LOAD_INFLIGHT];
    uint32_t head = 0, count = 0;
    uint64_t next = 1, done = 0;
    while (rc == TQ_OK && (next <= backlog || count > 0)) {
        while (rc == TQ_OK && next <= backlog && count < TQ_TICKETQ_LOAD_INFLIGHT) {
            struct load_batch *b = &window[(head + count) % TQ_TICKETQ_LOAD_INFLIGHT];
            b->first = next;
            b->count =
                (uint32_t)(backlog - next + 1 < TQ_TICKETQ_LOAD_BATCH ? backlog - next + 1
                                                                      : TQ_TICKETQ_LOAD_BATCH);
            rc = submit_load_batch(s, customers, b, error);
            if (rc != TQ_OK) break;
            next += b->count;
            count++;
        }
        if (rc != TQ_OK || count == 0) break;
        rc = collect_load_batch(s, &window[head], error);
        if (rc != TQ_OK) break;
        done += window[head].count;
        head = (head + 1) % TQ_TICKETQ_LOAD_INFLIGHT;
        count--;
        if (progress != NULL) progress(done);
    }
    if (rc != TQ_OK) return rc;
    s->loaded = true;
    return TQ_OK;
}

/* ---- fanout support ---------------------------------------------------------------------- */

void tq_ticketq_set_ack_hook(struct tq_bench_system *system, tq_ticketq_ack_fn fn, void *ctx) {
    struct ticketq_system *s = sys_of(system->ctx);
    s->ack_fn = fn;
    s->ack_ctx = ctx;
}

uint64_t tq_ticketq_load_lsn(const struct tq_bench_system *system) {
    const struct ticketq_system *s = system->ctx;
    return s->load_lsn;
}

enum tq_err tq_ticketq_connect(struct tq_bench_system *system, struct tq_client **client_out,
                               struct tq_error *error) {
    struct ticketq_system *s = sys_of(system->ctx);
    *client_out = NULL;
    if (!s->loaded) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION, "ticketq: connect before load");
    }
    return connect_client(s, 1, client_out, error);
}
