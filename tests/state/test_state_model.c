/* tests/state/test_state_model.c: the model-based random test of the ticket state machine.
 *
 * Goal: show that apply keeps its cross-structure invariants under any mix of commands, that
 * it is deterministic (replaying the log reproduces the state and the very same event stream),
 * and that a snapshot taken anywhere plus the rest of the log reproduces the same state.
 * Method: a seeded generator (TQ_SEED reproduces a run; the seed is printed first) produces
 * >= 100,000 mixed commands over 6 tenants: ingest-heavy traffic with duplicates and case
 * variants of identities, replies and notes, updates of every field (including disallowed
 * moves), claims, releases, transfers, merges, customer erasures (then the same senders come
 * back as new customers), outbox takes and acks, settings, SLA policies,
 * business hours, agent/queue changes, TICKs with time jumps, and deliberately wrong commands
 * (foreign or unknown ids). Every command that applies is encoded into an in-memory log.
 * Checked:
 *   - tq_state_check_invariants after every command for the first 3,000 commands, then after
 *     every 200th (an O(n) check after each of 100,000 commands is too slow under ASan) and at
 *     the end; it includes "the deadline index holds exactly the tickets with a timed item"
 *     and "each tenant's SLA index holds exactly its tickets with a running clock";
 *   - SlaNearest against an oracle from the ticket views (every running clock with a
 *     deadline, sorted) every 1,000th command and at the end, for every tenant;
 *   - a failing command changes nothing and emits nothing: no event ever, and the digest is
 *     compared around every 10th failure of the first 3,000 commands, every 400th later;
 *   - idempotent ingest against a shadow set of the (tenant, channel, external id) keys stored;
 *   - replay: every record is decoded and applied to a fresh state: each must succeed, the
 *     event stream must hash the same record by record, and the final digests must be equal;
 *     then again through a tq_state_window (decode-ahead, prefetch stages, hinted apply);
 *   - snapshot: serialise at a random point, deserialise, compare digests there, replay the
 *     rest of the log onto it: final digest equal; a corrupted snapshot is refused; the
 *     image serialisation (tq_state_serialize_image, mremap growth, body hashed as written)
 *     gives the very bytes of tq_state_serialize.
 */
#include "state.h"
#include "tq_alloc.h"
#include "tq_assert.h"
#include "tq_test.h"

#include <string.h>
#include <xxhash.h>

#define TENANTS 6
#define MAX_IDS 60000

struct ids {
    uint64_t v[MAX_IDS];
    uint32_t n;
};

struct tenant {
    uint64_t id;
    struct ids queues, agents, customers, tickets, outbound;
};

struct log {
    uint8_t *bytes;
    size_t len, cap;
    uint64_t *off;        /* record i spans off[i]..off[i+1] */
    uint64_t *event_hash; /* XXH3 of the events record i emitted */
    uint32_t n, cap_n;
};

static uint64_t rng;
static struct tenant tenants[TENANTS];
static struct log lg;

/* shadow of stored idempotency keys: "tenant/channel/id" strings hashed */
static uint64_t *keys;
static uint32_t key_n, key_cap;

static uint64_t rnd(uint64_t n) {
    return tq_test_rand_below(&rng, n);
}
static bool chance(unsigned percent) {
    return rnd(100) < percent;
}

static void ids_add(struct ids *s, uint64_t v) {
    if (s->n < MAX_IDS) s->v[s->n++] = v;
}
static uint64_t ids_pick(const struct ids *s) {
    return s->n == 0 ? 0 : s->v[rnd(s->n)];
}

/* ---- events: hashed per record --------------------------------------------------------- */

struct ev_acc {
    uint64_t hash;
    uint32_t count;
};

static void ev_hash(void *ctx, const struct tq_event *e) {
    struct ev_acc *a = ctx;
    uint64_t fields[12] = {(uint64_t)e->type,
                           e->lsn,
                           e->at_ms,
                           e->tenant_id,
                           e->ticket_id,
                           e->message_id,
                           e->customer_id,
                           e->agent_id,
                           e->queue_id,
                           (uint64_t)e->field,
                           (uint64_t)e->old_value,
                           (uint64_t)e->new_value};
    uint64_t h = XXH3_64bits(fields, sizeof(fields)) ^ ((uint64_t)e->sla_metric << 56);
    a->hash = a->hash * 0x100000001b3ull ^ h;
    a->count++;
}

static void log_append(const struct tq_cmd *cmd, uint64_t event_hash) {
    size_t n = tq_cmd_encoded_size(cmd);
    if (lg.len + n > lg.cap) {
        size_t cap = lg.cap == 0 ? (1u << 24) : lg.cap * 2;
        while (cap < lg.len + n)
            cap *= 2;
        lg.bytes = realloc(lg.bytes, cap);
        TQ_CHECK(lg.bytes != NULL);
        lg.cap = cap;
    }
    if (lg.n + 2 > lg.cap_n) {
        lg.cap_n = lg.cap_n == 0 ? 1024 : lg.cap_n * 2;
        lg.off = realloc(lg.off, lg.cap_n * sizeof(uint64_t));
        lg.event_hash = realloc(lg.event_hash, lg.cap_n * sizeof(uint64_t));
        TQ_CHECK(lg.off != NULL && lg.event_hash != NULL);
    }
    TQ_CHECK_UEQ(tq_cmd_encode(cmd, lg.bytes + lg.len, n), n);
    lg.off[lg.n] = lg.len;
    lg.event_hash[lg.n] = event_hash;
    lg.len += n;
    lg.n++;
    lg.off[lg.n] = lg.len;
}

/* ---- generator --------------------------------------------------------------------------- */

static char sbuf[64][96];
static unsigned sbuf_i;

static char *next_buf(void) {
    return sbuf[sbuf_i++ % 64];
}
static struct tq_str last_str(int n) {
    return (struct tq_str){sbuf[(sbuf_i - 1) % 64], (uint32_t)n};
}
/* snprintf into a rotating buffer; the string stays valid for the next 63 calls */
#define FMT(...) last_str(snprintf(next_buf(), 96, __VA_ARGS__))
#define U(x)     ((unsigned long long)(x))

static const char *const tag_pool[] = {"vip", "refund", "late", "damaged", "b2b", "promo"};

static struct tq_str random_tag(void) {
    const char *t = tag_pool[rnd(TQ_ARRAY_COUNT(tag_pool))];
    return (struct tq_str){t, (uint32_t)strlen(t)};
}

static struct tenant *pick_tenant(void) {
    return &tenants[rnd(TENANTS)];
}

/* Mostly the tenant's own ids, sometimes another tenant's or an unknown one. */
static uint64_t maybe_foreign(const struct ids *own, uint64_t own_pick) {
    (void)own;
    if (chance(3)) return rnd(2) ? 1 + rnd(100000) : ids_pick(&pick_tenant()->tickets);
    return own_pick;
}

static struct tq_attachment att_one = {{"att/1", 5}, {"photo.jpg", 9}, {"image/jpeg", 10}, 12345};
static struct tq_sla_policy policies[3];
static struct tq_calendar calendar;
static uint64_t claim_queue;
static struct tq_str tags_buf[4];
static struct tq_custom_field fields_buf[2];

static void gen(struct tq_cmd *c, uint64_t now, struct tenant **tn_out, bool *ingest_key_known,
                uint64_t *ingest_key) {
    memset(c, 0, sizeof(*c));
    c->now_ms = now;
    struct tenant *tn = pick_tenant();
    *tn_out = tn;
    *ingest_key_known = false;
    c->tenant_id = tn->id;
    uint64_t r = rnd(1000);
    if (r < 330) {
        c->type = TQ_CMD_MESSAGE_INGEST;
        enum tq_channel ch = (enum tq_channel)(rnd(10) < 6 ? rnd(3) : rnd(TQ_CHANNEL_COUNT));
        c->u.ingest.channel = ch;
        uint64_t who = rnd(400);
        c->u.ingest.from_external_id = ch != TQ_CHANNEL_EMAIL ? FMT("+%llu%llu", U(who), U(ch))
                                       : chance(50)           ? FMT("User%llu@Example.com", U(who))
                                                              : FMT("user%llu@example.com", U(who));
        c->u.ingest.customer_name = FMT("Customer %llu", U(who));
        if (chance(75)) {
            uint64_t mid = chance(10) ? rnd(40) : 100000 + rnd(1ull << 40);
            c->u.ingest.message_external_id = FMT("msg-%llu", U(mid));
            struct {
                uint64_t t, ch, id;
            } k = {tn->id, (uint64_t)ch, mid};
            *ingest_key = XXH3_64bits(&k, sizeof(k));
            *ingest_key_known = true;
        }
        c->u.ingest.queue_id = chance(30) ? 0 : maybe_foreign(&tn->queues, ids_pick(&tn->queues));
        if (c->u.ingest.queue_id != 0 && chance(97)) c->u.ingest.queue_id = ids_pick(&tn->queues);
        c->u.ingest.priority = (enum tq_priority)rnd(TQ_PRIORITY_COUNT);
        c->u.ingest.subject = FMT("Order %llu", U(rnd(100000)));
        c->u.ingest.body = FMT("hello, about order %llu (%llu)", U(rnd(100000)), U(now));
        c->u.ingest.provider_ts_ms = now - rnd(5000);
        if (chance(10)) {
            c->u.ingest.attachment_count = 1;
            c->u.ingest.attachments = &att_one;
        }
        if (chance(20)) {
            tags_buf[0] = random_tag();
            c->u.ingest.tag_count = 1;
            c->u.ingest.tags = tags_buf;
        }
    } else if (r < 480) {
        c->type = TQ_CMD_MESSAGE_REPLY;
        c->u.reply.ticket_id = maybe_foreign(&tn->tickets, ids_pick(&tn->tickets));
        c->actor_agent_id = chance(85) ? ids_pick(&tn->agents) : 0;
        c->u.reply.automated = chance(10);
        c->u.reply.internal_note = chance(15);
        c->u.reply.channel = (enum tq_channel)rnd(3);
        c->u.reply.body = FMT("reply %llu", U(now));
        if (chance(25)) {
            c->u.reply.set_status = true;
            c->u.reply.status = (enum tq_ticket_status)rnd(TQ_STATUS_COUNT);
        }
    } else if (r < 620) {
        c->type = TQ_CMD_TICKET_UPDATE;
        __typeof__(c->u.ticket_update) *u = &c->u.ticket_update;
        u->ticket_id = maybe_foreign(&tn->tickets, ids_pick(&tn->tickets));
        if (chance(20)) c->actor_agent_id = ids_pick(&tn->agents);
        while (u->fields == 0) {
            if (chance(50)) {
                u->fields |= TQ_UPDATE_STATUS;
                u->status = (enum tq_ticket_status)rnd(TQ_STATUS_COUNT);
            }
            if (chance(15)) {
                u->fields |= TQ_UPDATE_PRIORITY;
                u->priority = (enum tq_priority)rnd(TQ_PRIORITY_COUNT);
            }
            if (chance(10)) {
                u->fields |= TQ_UPDATE_QUEUE;
                u->queue_id = ids_pick(&tn->queues);
            }
            if (chance(15)) {
                u->fields |= TQ_UPDATE_ASSIGNEE;
                u->assignee_id = chance(20) ? 0 : ids_pick(&tn->agents);
            }
            if (chance(10)) {
                u->fields |= TQ_UPDATE_TAGS_ADD;
                tags_buf[0] = random_tag();
                tags_buf[1] = random_tag();
                u->tags_add = tags_buf;
                u->tags_add_count = 2;
            }
            if (chance(5)) {
                u->fields |= TQ_UPDATE_TAGS_REMOVE;
                tags_buf[2] = random_tag();
                u->tags_remove = tags_buf + 2;
                u->tags_remove_count = 1;
            }
            if (chance(5)) {
                u->fields |= TQ_UPDATE_SUBJECT;
                u->subject = FMT("Re: %llu", U(rnd(1000)));
            }
            if (chance(5)) {
                u->fields |= TQ_UPDATE_FIELDS;
                fields_buf[0] = (struct tq_custom_field){
                    {"order", 5}, TQ_FIELD_STRING, FMT("A-%llu", U(rnd(999))), 0};
                fields_buf[1] =
                    (struct tq_custom_field){{"items", 5}, TQ_FIELD_INT, {"", 0}, (int64_t)rnd(9)};
                u->custom_fields = fields_buf;
                u->field_count = 1 + (uint32_t)rnd(2);
            }
            if (chance(8)) {
                u->fields |= TQ_UPDATE_WAKE_AT;
                u->wake_at_ms = chance(20) ? 0 : now + rnd(6 * 3600000ull);
            }
        }
    } else if (r < 680) {
        c->type = TQ_CMD_TICKET_CLAIM;
        c->u.claim.agent_id = ids_pick(&tn->agents);
        if (chance(10)) c->actor_agent_id = ids_pick(&tn->agents);
        if (chance(50)) {
            claim_queue = maybe_foreign(&tn->queues, ids_pick(&tn->queues));
            if (chance(97)) claim_queue = ids_pick(&tn->queues);
            c->u.claim.queue_ids = &claim_queue;
            c->u.claim.queue_count = 1;
        }
    } else if (r < 700) {
        c->type = TQ_CMD_TICKET_RELEASE;
        c->u.release.ticket_id = ids_pick(&tn->tickets);
    } else if (r < 720) {
        c->type = TQ_CMD_TICKET_TRANSFER;
        c->u.transfer.ticket_id = ids_pick(&tn->tickets);
        if (chance(60)) c->u.transfer.to_queue_id = ids_pick(&tn->queues);
        if (chance(50)) c->u.transfer.to_agent_id = ids_pick(&tn->agents);
    } else if (r < 732) {
        c->type = TQ_CMD_TICKET_MERGE;
        c->u.ticket_merge.source_id = ids_pick(&tn->tickets);
        c->u.ticket_merge.target_id = maybe_foreign(&tn->tickets, ids_pick(&tn->tickets));
    } else if (r < 737) {
        /* right to erasure: sometimes a foreign/unknown id, sometimes twice (refused) */
        c->type = TQ_CMD_CUSTOMER_ERASE;
        c->u.customer_erase.customer_id =
            chance(5) ? ids_pick(&pick_tenant()->customers) : ids_pick(&tn->customers);
    } else if (r < 744) {
        c->type = TQ_CMD_CUSTOMER_MERGE;
        c->u.customer_merge.survivor_id = ids_pick(&tn->customers);
        c->u.customer_merge.merged_id = ids_pick(&tn->customers);
    } else if (r < 756) {
        if (chance(50)) {
            c->type = TQ_CMD_CUSTOMER_CREATE;
            c->u.customer_create.name = FMT("Walk-in %llu", U(rnd(1000)));
            c->u.customer_create.language = (struct tq_str){"de", 2};
            c->u.customer_create.channel = TQ_CHANNEL_PHONE;
            if (chance(70)) c->u.customer_create.external_id = FMT("+49%llu", U(rnd(500)));
        } else {
            c->type = TQ_CMD_CUSTOMER_LINK;
            c->u.customer_link.customer_id = ids_pick(&tn->customers);
            c->u.customer_link.channel = (enum tq_channel)rnd(TQ_CHANNEL_COUNT);
            c->u.customer_link.external_id = FMT("user%llu@example.com", U(rnd(600)));
        }
    } else if (r < 820) {
        c->type = TQ_CMD_OUTBOX_TAKE;
        c->u.outbox_take.channel = (enum tq_channel)rnd(3);
        c->u.outbox_take.max = 1 + (uint32_t)rnd(20);
        c->u.outbox_take.lease_ms = 1000 + rnd(120000);
    } else if (r < 880) {
        c->type = TQ_CMD_OUTBOX_ACK;
        c->u.outbox_ack.message_id = ids_pick(&tn->outbound);
        static const enum tq_delivery st[] = {TQ_DELIVERY_SENT, TQ_DELIVERY_DELIVERED,
                                              TQ_DELIVERY_READ, TQ_DELIVERY_FAILED};
        c->u.outbox_ack.status = st[rnd(4)];
        c->u.outbox_ack.retry = chance(50);
        c->u.outbox_ack.reason = (struct tq_str){"bounced", 7};
    } else if (r < 940) {
        c->type = TQ_CMD_TICK;
        c->tenant_id = 0;
    } else if (r < 955) {
        c->type = TQ_CMD_AGENT_UPDATE;
        c->u.agent.agent_id = ids_pick(&tn->agents);
        c->u.agent.set_presence = chance(70);
        c->u.agent.presence = (enum tq_presence)rnd(3);
        c->u.agent.set_capacity = chance(40);
        c->u.agent.capacity[0] = (uint32_t)rnd(6);
        c->u.agent.capacity[1] = (uint32_t)rnd(12);
    } else if (r < 962) {
        c->type = TQ_CMD_QUEUE_UPDATE;
        c->u.queue.queue_id = ids_pick(&tn->queues);
        c->u.queue.auto_assign = chance(50);
        c->u.queue.assignment_timeout_ms = chance(50) ? 0 : 60000 * (1 + rnd(30));
    } else if (r < 966) {
        c->type = TQ_CMD_TENANT_SETTINGS;
        c->u.tenant_settings.auto_close_ms = rnd(4) * 3600000ull * 12;
        c->u.tenant_settings.sla_warning_permille = (uint32_t)rnd(1001);
        c->u.tenant_settings.reply_window_ms[TQ_CHANNEL_WHATSAPP] = 24 * 3600000ull;
        c->u.tenant_settings.reply_window_ms[TQ_CHANNEL_SMS] = rnd(2) * 3600000ull;
        c->u.tenant_settings.default_queue_id[TQ_CHANNEL_EMAIL] = ids_pick(&tn->queues);
        c->u.tenant_settings.default_queue_id[TQ_CHANNEL_WHATSAPP] = ids_pick(&tn->queues);
        c->u.tenant_settings.default_queue_id[TQ_CHANNEL_SMS] = ids_pick(&tn->queues);
        c->u.tenant_settings.outbox_attempts_max = 1 + (uint32_t)rnd(5);
    } else if (r < 970) {
        c->type = TQ_CMD_SLA_POLICIES_SET;
        uint32_t n = (uint32_t)rnd(4);
        for (uint32_t i = 0; i < n; i++) {
            struct tq_sla_policy *p = &policies[i];
            memset(p, 0, sizeof(*p));
            p->name = FMT("policy %llu", U(i));
            p->channel = chance(30) ? (int32_t)rnd(3) : -1;
            p->queue_id = chance(30) ? ids_pick(&tn->queues) : 0;
            if (chance(20)) p->tag = random_tag();
            for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
                for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
                    p->targets.target_ms[m][q] = chance(80) ? (1 + rnd(48)) * 600000ull : 0;
                }
            }
            p->business_hours = chance(40);
        }
        c->u.sla_policies_set.count = n;
        c->u.sla_policies_set.policies = policies;
    } else if (r < 972) {
        c->type = TQ_CMD_BUSINESS_HOURS_SET;
        tq_calendar_init_24x7(&calendar);
        snprintf(calendar.tz_name, sizeof(calendar.tz_name), "Test/Zone");
        calendar.base_offset_s = (int32_t)rnd(3) * 3600;
        if (chance(80)) {
            for (int d = 1; d <= 5 + (int)rnd(2); d++) {
                calendar.interval_count[d] = 2;
                calendar.intervals[d][0] = (struct tq_calendar_interval){8 * 60, 12 * 60};
                calendar.intervals[d][1] = (struct tq_calendar_interval){13 * 60, 18 * 60};
            }
            calendar.holiday_count = 1;
            calendar.holidays[0] = (int32_t)(now / 86400000ull) + 2;
            calendar.tz_transition_count = 1;
            calendar.tz_transitions[0] = (struct tq_calendar_tz_transition){
                (int64_t)(now / 1000) + 86400 * 3, calendar.base_offset_s + 3600};
        }
        c->u.business_hours_set.calendar = &calendar;
    } else if (r < 980) {
        c->type = TQ_CMD_CONSUMER_ACK;
        c->u.consumer_ack.name = FMT("consumer-%llu", U(rnd(4)));
        c->u.consumer_ack.lsn = rnd(1000000);
    } else if (r < 985) {
        c->type = TQ_CMD_TOKEN_ISSUE;
        c->u.token_issue.role = chance(50) ? TQ_ROLE_AGENT : TQ_ROLE_INTEGRATION;
        if (c->u.token_issue.role == TQ_ROLE_AGENT)
            c->u.token_issue.agent_id = ids_pick(&tn->agents);
        for (int i = 0; i < 32; i++)
            c->u.token_issue.hash[i] = (uint8_t)rnd(chance(10) ? 2 : 256);
        c->u.token_issue.name = FMT("token %llu", U(rnd(100)));
    } else if (r < 988) {
        c->type = TQ_CMD_TOKEN_REVOKE;
        c->u.token_revoke.token_id = 1 + rnd(40);
    } else if (r < 993) {
        c->type = TQ_CMD_AGENT_CREATE;
        c->u.agent.name = FMT("agent %llu", U(rnd(1000)));
        c->u.agent.set_presence = true;
        c->u.agent.presence = (enum tq_presence)rnd(3);
        c->u.agent.set_capacity = true;
        c->u.agent.capacity[0] = (uint32_t)rnd(5);
        c->u.agent.capacity[1] = (uint32_t)rnd(10);
    } else {
        /* wrong on purpose: unknown tenant, empty names, foreign actors */
        switch (rnd(4)) {
        case 0:
            c->type = TQ_CMD_QUEUE_CREATE;
            c->tenant_id = 1000 + rnd(10);
            c->u.queue.name = (struct tq_str){"x", 1};
            break;
        case 1:
            c->type = TQ_CMD_QUEUE_CREATE; /* valid half of the time (named) */
            if (chance(50)) c->u.queue.name = FMT("extra %llu", U(rnd(100)));
            c->u.queue.auto_assign = chance(50);
            break;
        case 2:
            c->type = TQ_CMD_MESSAGE_REPLY;
            c->actor_agent_id = ids_pick(&pick_tenant()->agents);
            c->u.reply.ticket_id = ids_pick(&tn->tickets);
            break;
        default:
            c->type = TQ_CMD_TICKET_MERGE;
            c->u.ticket_merge.source_id = ids_pick(&tn->tickets);
            c->u.ticket_merge.target_id = ids_pick(&tn->tickets);
            break;
        }
    }
}

/* open-addressing set of 64-bit keys (0 is mapped to 1) */
static bool key_known(uint64_t k) {
    if (key_cap == 0) return false;
    k = k == 0 ? 1 : k;
    for (uint32_t i = (uint32_t)k & (key_cap - 1);; i = (i + 1) & (key_cap - 1)) {
        if (keys[i] == 0) return false;
        if (keys[i] == k) return true;
    }
}

static void key_add(uint64_t k) {
    if ((key_n + 1) * 2 > key_cap) {
        uint64_t *old = keys;
        uint32_t old_cap = key_cap;
        key_cap = key_cap == 0 ? 4096 : key_cap * 2;
        keys = calloc(key_cap, sizeof(uint64_t));
        TQ_CHECK(keys != NULL);
        key_n = 0;
        for (uint32_t i = 0; i < old_cap; i++) {
            if (old[i] != 0) key_add(old[i]);
        }
        free(old);
    }
    k = k == 0 ? 1 : k;
    uint32_t i = (uint32_t)k & (key_cap - 1);
    while (keys[i] != 0)
        i = (i + 1) & (key_cap - 1);
    keys[i] = k;
    key_n++;
}

static void check_invariants(const struct tq_state *s, uint32_t op) {
    struct tq_error e;
    if (!tq_state_check_invariants(s, &e)) {
        fprintf(stderr, "invariant violated after op %u: %s\n", op, e.msg);
        TQ_CHECK(false);
    }
}

/* The paged reads over the queue and deadline heaps (best-first walks; debug builds also
 * compare each answer with a full scan inside the library): sizes, order and membership. */
static void check_pages(const struct tq_state *s) {
    const struct tenant *tn = &tenants[rnd(TENANTS)];
    uint32_t cap = 1 + (uint32_t)rnd(64);
    uint64_t ids[64];
    for (uint32_t i = 0; i < tn->queues.n; i++) {
        struct tq_queue_view qv;
        TQ_CHECK_OK(tq_state_queue_get(s, tn->id, tn->queues.v[i], &qv), NULL);
        uint32_t n = tq_state_queue_list(s, tn->id, tn->queues.v[i], ids, cap);
        TQ_CHECK_EQ(n, qv.depth < cap ? qv.depth : cap);
        for (uint32_t j = 0; j < n; j++) {
            struct tq_ticket_view tv;
            TQ_CHECK_OK(tq_state_ticket_get(s, tn->id, ids[j], &tv), NULL);
            TQ_CHECK_UEQ(tv.queue_id, tn->queues.v[i]);
            TQ_CHECK_UEQ(tv.assignee_id, 0);
            for (uint32_t k = 0; k < j; k++)
                TQ_CHECK(ids[k] != ids[j]);
        }
    }
    struct tq_sla_due due[64];
    uint32_t n = tq_state_sla_nearest(s, tn->id, due, cap);
    TQ_CHECK(n <= cap);
    for (uint32_t j = 1; j < n; j++) {
        TQ_CHECK(due[j - 1].deadline_ms < due[j].deadline_ms ||
                 (due[j - 1].deadline_ms == due[j].deadline_ms &&
                  due[j - 1].ticket_id <= due[j].ticket_id));
    }
}

static int sla_due_cmp(const void *pa, const void *pb) {
    const struct tq_sla_due *a = pa, *b = pb;
    if (a->deadline_ms != b->deadline_ms) return a->deadline_ms < b->deadline_ms ? -1 : 1;
    if (a->ticket_id != b->ticket_id) return a->ticket_id < b->ticket_id ? -1 : 1;
    return (int)a->metric - (int)b->metric;
}

/* SlaNearest against an oracle built from the public ticket views only: every running clock
 * with a deadline of every unclosed ticket of the tenant, sorted by (deadline, ticket, metric).
 * A page of 50 and the whole set must match entry by entry. O(tickets), so it runs every
 * 1,000th command; it draws no random numbers (the generated log is the same as without it). */
static void check_sla_oracle(const struct tq_state *s) {
    static struct tq_sla_due want[MAX_IDS * TQ_SLA_METRIC_COUNT];
    static struct tq_sla_due got[MAX_IDS * TQ_SLA_METRIC_COUNT];
    for (int k = 0; k < TENANTS; k++) {
        const struct tenant *tn = &tenants[k];
        uint32_t n = 0;
        for (uint32_t i = 0; i < tn->tickets.n; i++) {
            struct tq_ticket_view v;
            TQ_CHECK_OK(tq_state_ticket_get(s, tn->id, tn->tickets.v[i], &v), NULL);
            if (v.status == TQ_STATUS_CLOSED) continue;
            for (uint32_t m = 0; m < v.sla_count; m++) {
                if (v.sla[m].state != TQ_SLA_RUNNING || v.sla[m].deadline_ms == 0) continue;
                want[n++] =
                    (struct tq_sla_due){tn->tickets.v[i], v.sla[m].metric, v.sla[m].deadline_ms};
            }
        }
        qsort(want, n, sizeof(*want), sla_due_cmp);
        uint32_t caps[2] = {50, n + 1};
        for (int c = 0; c < 2; c++) {
            uint32_t got_n = tq_state_sla_nearest(s, tn->id, got, caps[c]);
            TQ_CHECK_EQ(got_n, n < caps[c] ? n : caps[c]);
            for (uint32_t i = 0; i < got_n; i++) {
                TQ_CHECK_UEQ(got[i].ticket_id, want[i].ticket_id);
                TQ_CHECK_EQ(got[i].metric, want[i].metric);
                TQ_CHECK_UEQ(got[i].deadline_ms, want[i].deadline_ms);
            }
        }
    }
}

static void setup(struct tq_state *s, uint64_t *lsn, uint64_t now) {
    struct ev_acc acc = {0, 0};
    struct tq_event_sink sink = {ev_hash, &acc};
    struct tq_cmd_result res;
    struct tq_error err;
    for (int t = 0; t < TENANTS; t++) {
        struct tq_cmd c;
        memset(&c, 0, sizeof(c));
        c.now_ms = now;
        c.type = TQ_CMD_TENANT_CREATE;
        c.u.tenant_create.name = FMT("tenant %llu", U((uint64_t)t));
        acc.hash = 0;
        acc.count = 0;
        TQ_CHECK_OK(tq_state_apply(s, ++*lsn, &c, &res, &sink, &err), &err);
        log_append(&c, acc.hash ^ acc.count);
        tenants[t].id = res.tenant_id;
        for (int q = 0; q < 3; q++) {
            memset(&c, 0, sizeof(c));
            c.now_ms = now;
            c.type = TQ_CMD_QUEUE_CREATE;
            c.tenant_id = tenants[t].id;
            c.u.queue.name = FMT("queue %llu", U((uint64_t)q));
            c.u.queue.auto_assign = q == 2;
            c.u.queue.assignment_timeout_ms = q == 1 ? 900000 : 0;
            acc.hash = 0;
            acc.count = 0;
            TQ_CHECK_OK(tq_state_apply(s, ++*lsn, &c, &res, &sink, &err), &err);
            log_append(&c, acc.hash ^ acc.count);
            ids_add(&tenants[t].queues, res.queue_id);
        }
        for (int a = 0; a < 4; a++) {
            memset(&c, 0, sizeof(c));
            c.now_ms = now;
            c.type = TQ_CMD_AGENT_CREATE;
            c.tenant_id = tenants[t].id;
            c.u.agent.name = FMT("agent %llu", U((uint64_t)a));
            c.u.agent.set_presence = true;
            c.u.agent.presence = TQ_PRESENCE_ONLINE;
            c.u.agent.set_capacity = true;
            c.u.agent.capacity[0] = 3;
            c.u.agent.capacity[1] = 8;
            acc.hash = 0;
            acc.count = 0;
            TQ_CHECK_OK(tq_state_apply(s, ++*lsn, &c, &res, &sink, &err), &err);
            log_append(&c, acc.hash ^ acc.count);
            ids_add(&tenants[t].agents, res.agent_id);
        }
    }
}

int main(void) {
    uint64_t seed = tq_test_seed("test_state_model");
    rng = seed;
    uint32_t ops = 100000;
    const char *env = getenv("TQ_STATE_MODEL_OPS");
    if (env != NULL && env[0] != '\0') ops = (uint32_t)strtoul(env, NULL, 0);
    struct tq_state *s = tq_state_new(NULL);
    uint64_t lsn = 0, now = 1700000000000ull;
    setup(s, &lsn, now);
    uint32_t snap_at = (uint32_t)(ops / 4 + rnd(ops / 2));
    void *snap = NULL;
    size_t snap_len = 0;
    uint32_t snap_log_n = 0;
    uint8_t snap_digest[16];
    struct ev_acc acc;
    struct tq_event_sink sink = {ev_hash, &acc};
    struct tq_cmd_result res;
    struct tq_error err;
    uint32_t ok_n = 0, fail_n = 0, dup_n = 0, erased_n = 0, erase_refused_n = 0;
    uint32_t by_type_ok[TQ_CMD_TYPE_MAX + 1] = {0};
    for (uint32_t op = 0; op < ops; op++) {
        now += rnd(20000);
        struct tq_cmd c;
        struct tenant *tn;
        bool has_key;
        uint64_t key = 0;
        gen(&c, now, &tn, &has_key, &key);
        if (c.type == TQ_CMD_TICK) {
            now += chance(20) ? rnd(8 * 3600000ull) : rnd(60000);
            c.now_ms = now;
        }
        /* the digest is O(state): around every 10th failure early, every 400th later */
        bool check_fail = fail_n % (op < 3000 ? 10 : 400) == 0;
        uint8_t before[16], after[16];
        if (check_fail) tq_state_digest(s, before);
        acc.hash = 0;
        acc.count = 0;
        enum tq_err e = tq_state_apply(s, lsn + 1, &c, &res, &sink, &err);
        if (e != TQ_OK) {
            TQ_CHECK_EQ(acc.count, 0);
            if (check_fail) {
                tq_state_digest(s, after);
                TQ_CHECK_MEM_EQ(before, after, 16);
            }
            TQ_CHECK(e != TQ_ERR_INTERNAL && e != TQ_ERR_CORRUPT);
            if (c.type == TQ_CMD_CUSTOMER_ERASE && e == TQ_ERR_FAILED_PRECONDITION) {
                erase_refused_n++; /* erased before: idempotent error */
            }
            fail_n++;
        } else {
            lsn++;
            ok_n++;
            by_type_ok[c.type]++;
            log_append(&c, acc.hash ^ acc.count);
            if (c.type == TQ_CMD_MESSAGE_INGEST) {
                if (has_key) {
                    TQ_CHECK_EQ(res.duplicate, key_known(key));
                    if (!res.duplicate) key_add(key);
                    dup_n += res.duplicate;
                }
                if (res.ticket_created) ids_add(&tn->tickets, res.ticket_id);
                if (res.customer_created) ids_add(&tn->customers, res.customer_id);
                /* an erased customer's identities are gone: a new message never lands on it
                 * (a duplicate answers with the original ticket's customer, erased or not) */
                struct tq_customer_view cv;
                TQ_CHECK_OK(tq_state_customer_get(s, tn->id, res.customer_id, &cv), NULL);
                TQ_CHECK(res.duplicate || !cv.erased);
            } else if (c.type == TQ_CMD_CUSTOMER_ERASE) {
                struct tq_customer_view cv;
                TQ_CHECK_OK(tq_state_customer_get(s, tn->id, res.customer_id, &cv), NULL);
                TQ_CHECK(cv.erased && cv.name.len == 0 && cv.language.len == 0);
                TQ_CHECK_EQ(cv.identity_count, 0);
                TQ_CHECK_EQ(acc.count, 1); /* CUSTOMER_ERASED only */
                erased_n++;
            } else if (c.type == TQ_CMD_MESSAGE_REPLY && !c.u.reply.internal_note) {
                ids_add(&tn->outbound, res.message_id);
            } else if (c.type == TQ_CMD_CUSTOMER_CREATE) {
                ids_add(&tn->customers, res.customer_id);
            } else if (c.type == TQ_CMD_AGENT_CREATE) {
                ids_add(&tn->agents, res.agent_id);
            } else if (c.type == TQ_CMD_QUEUE_CREATE) {
                ids_add(&tn->queues, res.queue_id);
            }
        }
        if (op < 3000 || op % 200 == 0) check_invariants(s, op);
        if (op % 50 == 0) check_pages(s);
        if (op % 1000 == 999) check_sla_oracle(s);
        if (op == snap_at) {
            TQ_CHECK_OK(tq_state_serialize(s, &snap, &snap_len, &err), &err);
            snap_log_n = lg.n;
            tq_state_digest(s, snap_digest);
        }
    }
    check_invariants(s, ops);
    check_sla_oracle(s);
    uint8_t live[16];
    tq_state_digest(s, live);
    struct tq_stats st;
    tq_state_stats(s, 0, &st);
    printf("test_state_model: %u ops, %u applied, %u refused, %u duplicates; %" PRIu64
           " tickets, %" PRIu64 " messages, %" PRIu64 " breaches, %" PRIu64 " warnings, %" PRIu64
           " queued, %" PRIu64 " outbox\n",
           ops, ok_n, fail_n, dup_n, st.ticket_count, st.message_count, st.sla_breaches,
           st.sla_warnings, st.queued_tickets, st.outbox_pending);
    for (int t = TQ_CMD_TENANT_SETTINGS; t <= TQ_CMD_TYPE_MAX; t++) {
        if (by_type_ok[t] == 0) fprintf(stderr, "command type %d never applied\n", t);
        TQ_CHECK_GT(by_type_ok[t], 0); /* every command type was exercised */
    }
    TQ_CHECK_GT(dup_n, 0);
    printf("test_state_model: %u customers erased, %u repeated erasures refused\n", erased_n,
           erase_refused_n);
    TQ_CHECK_GT(erase_refused_n, 0);
    TQ_CHECK_GT(st.sla_breaches, 0);

    /* replay the whole log into a fresh state: same events record by record, same digest */
    struct tq_arena arena;
    tq_arena_init(&arena, 1 << 16);
    struct tq_state *r = tq_state_new(NULL);
    for (uint32_t i = 0; i < lg.n; i++) {
        struct tq_cmd d;
        tq_arena_reset(&arena);
        TQ_CHECK_OK(
            tq_cmd_decode(lg.bytes + lg.off[i], lg.off[i + 1] - lg.off[i], &d, &arena, &err), &err);
        acc.hash = 0;
        acc.count = 0;
        TQ_CHECK_OK(tq_state_apply(r, i + 1, &d, &res, &sink, &err), &err);
        if ((acc.hash ^ acc.count) != lg.event_hash[i]) {
            fprintf(stderr, "replay: record %u (type %d) emitted different events\n", i, d.type);
            TQ_CHECK(false);
        }
    }
    uint8_t replayed[16];
    tq_state_digest(r, replayed);
    TQ_CHECK_MEM_EQ(live, replayed, 16);
    check_invariants(r, ops);
    tq_state_free(r);

    /* the same through a decode-ahead window (prefetch stages, hinted apply): same events
     * record by record, same results, same digest */
    static struct tq_state_window win;
    tq_state_window_init(&win);
    r = tq_state_new(NULL);
    uint32_t pushed = 0;
    for (uint32_t i = 0; i < lg.n; i++) {
        while (pushed < lg.n && !tq_state_window_full(&win)) {
            TQ_CHECK_OK(tq_state_window_push(&win, r, pushed + 1, lg.bytes + lg.off[pushed],
                                             lg.off[pushed + 1] - lg.off[pushed], &err),
                        &err);
            pushed++;
        }
        acc.hash = 0;
        acc.count = 0;
        uint64_t wlsn = 0;
        const struct tq_cmd *wc = NULL;
        TQ_CHECK_OK(tq_state_window_apply(&win, r, &res, &sink, &wlsn, &wc, &err), &err);
        TQ_CHECK_UEQ(wlsn, i + 1);
        TQ_CHECK(wc != NULL);
        if ((acc.hash ^ acc.count) != lg.event_hash[i]) {
            fprintf(stderr, "window replay: record %u (type %d) emitted different events\n", i,
                    wc->type);
            TQ_CHECK(false);
        }
    }
    TQ_CHECK(tq_state_window_empty(&win));
    /* a record that does not decode is refused and leaves the window as it was */
    uint8_t junk[3] = {0xff, 0xff, 0xff};
    TQ_CHECK_ERR(tq_state_window_push(&win, r, lg.n + 1, junk, sizeof(junk), &err), TQ_ERR_CORRUPT,
                 &err);
    TQ_CHECK(tq_state_window_empty(&win));
    tq_state_digest(r, replayed);
    TQ_CHECK_MEM_EQ(live, replayed, 16);
    check_invariants(r, ops);
    tq_state_free(r);
    tq_state_window_destroy(&win);

    /* snapshot at snap_at, load, compare, replay the rest */
    TQ_CHECK(snap != NULL);
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(snap, snap_len, NULL, &l, &err), &err);
    uint8_t loaded[16];
    tq_state_digest(l, loaded);
    TQ_CHECK_MEM_EQ(loaded, snap_digest, 16);
    check_invariants(l, snap_at);
    TQ_CHECK_UEQ(tq_state_lsn(l), snap_log_n);
    for (uint32_t i = snap_log_n; i < lg.n; i++) {
        struct tq_cmd d;
        tq_arena_reset(&arena);
        TQ_CHECK_OK(
            tq_cmd_decode(lg.bytes + lg.off[i], lg.off[i + 1] - lg.off[i], &d, &arena, &err), &err);
        acc.hash = 0;
        acc.count = 0;
        TQ_CHECK_OK(tq_state_apply(l, i + 1, &d, &res, &sink, &err), &err);
        TQ_CHECK_UEQ(acc.hash ^ acc.count, lg.event_hash[i]);
    }
    tq_state_digest(l, loaded);
    TQ_CHECK_MEM_EQ(loaded, live, 16);
    /* a snapshot of the final states round-trips to the same bytes */
    void *b1, *b2;
    size_t n1, n2;
    TQ_CHECK_OK(tq_state_serialize(s, &b1, &n1, &err), &err);
    TQ_CHECK_OK(tq_state_serialize(l, &b2, &n2, &err), &err);
    TQ_CHECK_UEQ(n1, n2);
    TQ_CHECK_MEM_EQ(b1, b2, n1);
    /* the background snapshot's image is the same blob, after any head, zeros before it */
    const size_t heads[] = {0, 64, 4096};
    for (size_t k = 0; k < TQ_ARRAY_COUNT(heads); k++) {
        struct tq_state_image img;
        TQ_CHECK_OK(tq_state_serialize_image(s, heads[k], &img, &err), &err);
        TQ_CHECK_UEQ(img.head_bytes, heads[k]);
        TQ_CHECK_UEQ(img.blob_bytes, n1);
        TQ_CHECK_UEQ((uintptr_t)img.map % 4096, 0);
        TQ_CHECK_UEQ(img.map_bytes % 4096, 0);
        TQ_CHECK(img.map_bytes >= heads[k] + n1);
        for (size_t i = 0; i < heads[k]; i++)
            TQ_CHECK_UEQ(img.map[i], 0);
        TQ_CHECK_MEM_EQ(img.map + heads[k], b1, n1);
        tq_state_image_free(&img);
        TQ_CHECK(img.map == NULL);
    }
    printf("test_state_model: serialised state %zu bytes (image and blob equal)\n", n1);
    tq_state_free(l);
    /* damaged snapshots are refused: a flipped bit, a truncation */
    uint8_t *bytes = b1;
    for (int k = 0; k < 20; k++) {
        size_t at = rnd(n1);
        bytes[at] ^= (uint8_t)(1u << rnd(8));
        TQ_CHECK_ERR(tq_state_deserialize(b1, n1, NULL, &l, &err), TQ_ERR_CORRUPT, &err);
        bytes[at] = ((uint8_t *)b2)[at];
        TQ_CHECK_ERR(tq_state_deserialize(b1, rnd(n1), NULL, &l, &err), TQ_ERR_CORRUPT, &err);
    }
    tq_free(b1, n1);
    tq_free(b2, n2);
    tq_free(snap, snap_len);
    tq_arena_destroy(&arena);
    tq_state_free(s);
    free(lg.bytes);
    free(lg.off);
    free(lg.event_hash);
    free(keys);
    printf("test_state_model: ok (replay and snapshot digests equal)\n");
    return 0;
}
