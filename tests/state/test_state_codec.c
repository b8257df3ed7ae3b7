/* tests/state/test_state_codec.c: the command record codec (tq_cmd_encode / tq_cmd_decode).
 *
 * Goal: every command type round-trips field for field, and decode never trusts its input.
 * Method: one fully populated command per type is encoded, decoded and compared field by field
 * (by re-encoding: the encoding is canonical, so equal bytes mean equal fields), plus explicit
 * field checks for the richest types. Then a seeded mutation loop (bit flips, byte changes,
 * truncations, extensions, random garbage) feeds ~150,000 inputs to decode. Checked: decode
 * returns TQ_OK or TQ_ERR_CORRUPT, nothing else, never crashes or reads out of bounds (ASan),
 * and whatever it accepts re-encodes to exactly the input bytes (so decode accepts one
 * canonical form per command and every accepted record means something well-defined).
 */
#include "state.h"
#include "tq_alloc.h"
#include "tq_test.h"

#include <string.h>

static struct tq_str S(const char *s) {
    return (struct tq_str){s, (uint32_t)strlen(s)};
}

static const struct tq_attachment atts[2] = {
    {{"s3://a/1", 8}, {"invoice.pdf", 11}, {"application/pdf", 15}, 1234},
    {{"s3://a/2", 8}, {"photo.jpg", 9}, {"image/jpeg", 10}, 99},
};
static const struct tq_str tags[3] = {{"vip", 3}, {"refund", 6}, {"b2b", 3}};
static const struct tq_custom_field fields[2] = {
    {{"order", 5}, TQ_FIELD_STRING, {"A-17", 4}, 0},
    {{"items", 5}, TQ_FIELD_INT, {"", 0}, -42},
};
static const uint64_t queues[3] = {4, 5, 6};
static struct tq_sla_policy policies[2];
static struct tq_calendar cal;

static struct tq_cmd sample(enum tq_cmd_type type) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = type;
    c.now_ms = 1700000000123ull;
    c.tenant_id = 7;
    c.actor_agent_id = 3;
    switch (type) {
    case TQ_CMD_TENANT_CREATE: c.u.tenant_create.name = S("Acme GmbH"); break;
    case TQ_CMD_TENANT_SETTINGS:
        c.u.tenant_settings.auto_close_ms = 345600000;
        c.u.tenant_settings.sla_warning_permille = 800;
        for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
            c.u.tenant_settings.reply_window_ms[i] = (uint64_t)i * 1000;
            c.u.tenant_settings.default_queue_id[i] = (uint64_t)i;
        }
        c.u.tenant_settings.outbox_attempts_max = 4;
        break;
    case TQ_CMD_SLA_POLICIES_SET:
        for (int i = 0; i < 2; i++) {
            memset(&policies[i], 0, sizeof(policies[i]));
            policies[i].name = S(i ? "vip" : "default");
            policies[i].queue_id = (uint64_t)i * 3;
            policies[i].channel = i ? TQ_CHANNEL_WHATSAPP : -1;
            policies[i].tag = S(i ? "vip" : "");
            for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
                for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
                    policies[i].targets.target_ms[m][q] = (uint64_t)(m * 10 + q + i) * 60000;
                }
            }
            policies[i].business_hours = i == 1;
        }
        c.u.sla_policies_set.count = 2;
        c.u.sla_policies_set.policies = policies;
        break;
    case TQ_CMD_BUSINESS_HOURS_SET:
        tq_calendar_init_24x7(&cal);
        snprintf(cal.tz_name, sizeof(cal.tz_name), "Europe/Berlin");
        cal.base_offset_s = 3600;
        cal.tz_transition_count = 2;
        cal.tz_transitions[0] = (struct tq_calendar_tz_transition){1711846800, 7200};
        cal.tz_transitions[1] = (struct tq_calendar_tz_transition){1729990800, 3600};
        for (int d = 1; d <= 5; d++) {
            cal.interval_count[d] = 2;
            cal.intervals[d][0] = (struct tq_calendar_interval){540, 720};
            cal.intervals[d][1] = (struct tq_calendar_interval){780, 1080};
        }
        cal.holiday_count = 2;
        cal.holidays[0] = 19723;
        cal.holidays[1] = 19724;
        c.u.business_hours_set.calendar = &cal;
        break;
    case TQ_CMD_TOKEN_ISSUE:
        c.u.token_issue.role = TQ_ROLE_AGENT;
        c.u.token_issue.agent_id = 3;
        for (int i = 0; i < 32; i++)
            c.u.token_issue.hash[i] = (uint8_t)(i * 7);
        c.u.token_issue.name = S("laptop");
        break;
    case TQ_CMD_TOKEN_REVOKE: c.u.token_revoke.token_id = 11; break;
    case TQ_CMD_QUEUE_CREATE:
    case TQ_CMD_QUEUE_UPDATE:
        c.u.queue.queue_id = type == TQ_CMD_QUEUE_UPDATE ? 5 : 0;
        c.u.queue.name = S("after-sales");
        c.u.queue.auto_assign = true;
        c.u.queue.assignment_timeout_ms = 600000;
        break;
    case TQ_CMD_AGENT_CREATE:
    case TQ_CMD_AGENT_UPDATE:
        c.u.agent.agent_id = type == TQ_CMD_AGENT_UPDATE ? 3 : 0;
        c.u.agent.name = S("Li Wei");
        c.u.agent.set_presence = true;
        c.u.agent.presence = TQ_PRESENCE_AWAY;
        c.u.agent.set_capacity = true;
        c.u.agent.capacity[0] = 3;
        c.u.agent.capacity[1] = 12;
        break;
    case TQ_CMD_CUSTOMER_CREATE:
        c.u.customer_create.name = S("Ann");
        c.u.customer_create.language = S("fr");
        c.u.customer_create.channel = TQ_CHANNEL_INSTAGRAM;
        c.u.customer_create.external_id = S("@ann");
        break;
    case TQ_CMD_CUSTOMER_LINK:
        c.u.customer_link.customer_id = 9;
        c.u.customer_link.channel = TQ_CHANNEL_EBAY;
        c.u.customer_link.external_id = S("ann-buys");
        break;
    case TQ_CMD_CUSTOMER_MERGE:
        c.u.customer_merge.survivor_id = 9;
        c.u.customer_merge.merged_id = 10;
        break;
    case TQ_CMD_CUSTOMER_ERASE: c.u.customer_erase.customer_id = 11; break;
    case TQ_CMD_MESSAGE_INGEST:
        c.u.ingest.channel = TQ_CHANNEL_WHATSAPP;
        c.u.ingest.from_external_id = S("+8613800000000");
        c.u.ingest.customer_name = S("Wang");
        c.u.ingest.language = S("zh");
        c.u.ingest.message_external_id = S("wamid.HBgL");
        c.u.ingest.provider_ts_ms = 1700000000000ull;
        c.u.ingest.queue_id = 4;
        c.u.ingest.priority = TQ_PRIORITY_HIGH;
        c.u.ingest.subject = S("\xe8\xae\xa2\xe5\x8d\x95"); /* UTF-8 */
        c.u.ingest.body = S("where is my parcel?");
        c.u.ingest.attachment_count = 2;
        c.u.ingest.attachments = atts;
        c.u.ingest.tag_count = 3;
        c.u.ingest.tags = tags;
        break;
    case TQ_CMD_MESSAGE_REPLY:
        c.u.reply.ticket_id = 12;
        c.u.reply.internal_note = false;
        c.u.reply.automated = true;
        c.u.reply.channel = TQ_CHANNEL_WHATSAPP;
        c.u.reply.set_status = true;
        c.u.reply.status = TQ_STATUS_PENDING;
        c.u.reply.body = S("on its way");
        c.u.reply.attachment_count = 1;
        c.u.reply.attachments = atts;
        break;
    case TQ_CMD_TICKET_UPDATE:
        c.u.ticket_update.ticket_id = 12;
        c.u.ticket_update.fields = 0x1ff;
        c.u.ticket_update.status = TQ_STATUS_ON_HOLD;
        c.u.ticket_update.priority = TQ_PRIORITY_URGENT;
        c.u.ticket_update.queue_id = 5;
        c.u.ticket_update.assignee_id = 3;
        c.u.ticket_update.tags_add_count = 2;
        c.u.ticket_update.tags_add = tags;
        c.u.ticket_update.tags_remove_count = 1;
        c.u.ticket_update.tags_remove = tags + 2;
        c.u.ticket_update.subject = S("Re: parcel");
        c.u.ticket_update.field_count = 2;
        c.u.ticket_update.custom_fields = fields;
        c.u.ticket_update.wake_at_ms = 1700003600000ull;
        break;
    case TQ_CMD_TICKET_CLAIM:
        c.u.claim.agent_id = 3;
        c.u.claim.queue_count = 3;
        c.u.claim.queue_ids = queues;
        break;
    case TQ_CMD_TICKET_RELEASE: c.u.release.ticket_id = 12; break;
    case TQ_CMD_TICKET_TRANSFER:
        c.u.transfer.ticket_id = 12;
        c.u.transfer.to_queue_id = 6;
        c.u.transfer.to_agent_id = 8;
        break;
    case TQ_CMD_TICKET_MERGE:
        c.u.ticket_merge.source_id = 12;
        c.u.ticket_merge.target_id = 13;
        break;
    case TQ_CMD_OUTBOX_TAKE:
        c.u.outbox_take.channel = TQ_CHANNEL_SMS;
        c.u.outbox_take.max = 100;
        c.u.outbox_take.lease_ms = 30000;
        break;
    case TQ_CMD_OUTBOX_ACK:
        c.u.outbox_ack.message_id = 77;
        c.u.outbox_ack.status = TQ_DELIVERY_FAILED;
        c.u.outbox_ack.reason = S("number unreachable");
        c.u.outbox_ack.provider_message_id = S("SM123");
        c.u.outbox_ack.provider_ts_ms = 1700000000999ull;
        c.u.outbox_ack.retry = true;
        break;
    case TQ_CMD_CONSUMER_ACK:
        c.u.consumer_ack.name = S("crm");
        c.u.consumer_ack.lsn = 123456789;
        break;
    case TQ_CMD_TICK: c.tenant_id = 0; break;
    }
    return c;
}

static bool str_eq(struct tq_str a, struct tq_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void test_round_trip(struct tq_arena *arena, uint8_t *buf, size_t cap) {
    for (int t = 1; t <= TQ_CMD_TYPE_MAX; t++) {
        struct tq_cmd c = sample((enum tq_cmd_type)t), d;
        size_t n = tq_cmd_encode(&c, buf, cap);
        TQ_CHECK_GT(n, 0);
        TQ_CHECK_UEQ(n, tq_cmd_encoded_size(&c));
        TQ_CHECK_EQ(tq_cmd_encode(&c, buf, n - 1), 0); /* too small: nothing written */
        struct tq_error err;
        tq_arena_reset(arena);
        TQ_CHECK_OK(tq_cmd_decode(buf, n, &d, arena, &err), &err);
        TQ_CHECK_EQ(d.type, c.type);
        TQ_CHECK_UEQ(d.now_ms, c.now_ms);
        TQ_CHECK_UEQ(d.tenant_id, c.tenant_id);
        TQ_CHECK_UEQ(d.actor_agent_id, c.actor_agent_id);
        static uint8_t again[1 << 16];
        TQ_CHECK_UEQ(tq_cmd_encode(&d, again, sizeof(again)), n);
        TQ_CHECK_MEM_EQ(again, buf, n);
        if (t == TQ_CMD_MESSAGE_INGEST) {
            TQ_CHECK(str_eq(d.u.ingest.body, c.u.ingest.body));
            TQ_CHECK(str_eq(d.u.ingest.subject, c.u.ingest.subject));
            TQ_CHECK_EQ(d.u.ingest.attachment_count, 2);
            TQ_CHECK(str_eq(d.u.ingest.attachments[1].mime_type, S("image/jpeg")));
            TQ_CHECK_UEQ(d.u.ingest.attachments[0].size_bytes, 1234);
            TQ_CHECK_EQ(d.u.ingest.tag_count, 3);
            TQ_CHECK(str_eq(d.u.ingest.tags[2], S("b2b")));
            TQ_CHECK_EQ(d.u.ingest.priority, TQ_PRIORITY_HIGH);
        } else if (t == TQ_CMD_CUSTOMER_ERASE) {
            TQ_CHECK_UEQ(d.u.customer_erase.customer_id, 11);
            TQ_CHECK_UEQ(n, 26 + 8); /* header + the id, nothing else */
        } else if (t == TQ_CMD_TICKET_UPDATE) {
            TQ_CHECK_EQ(d.u.ticket_update.custom_fields[1].int_value, -42);
            TQ_CHECK(str_eq(d.u.ticket_update.custom_fields[0].string_value, S("A-17")));
            TQ_CHECK_UEQ(d.u.ticket_update.wake_at_ms, 1700003600000ull);
        } else if (t == TQ_CMD_BUSINESS_HOURS_SET) {
            const struct tq_calendar *k = d.u.business_hours_set.calendar;
            TQ_CHECK_MEM_EQ(k, &cal, sizeof(cal)); /* unused parts zero in both */
        } else if (t == TQ_CMD_SLA_POLICIES_SET) {
            TQ_CHECK_EQ(d.u.sla_policies_set.policies[1].channel, TQ_CHANNEL_WHATSAPP);
            TQ_CHECK_EQ(d.u.sla_policies_set.policies[0].channel, -1);
            TQ_CHECK(d.u.sla_policies_set.policies[1].business_hours);
            TQ_CHECK_UEQ(d.u.sla_policies_set.policies[1].targets.target_ms[2][3],
                         policies[1].targets.target_ms[2][3]);
        } else if (t == TQ_CMD_TOKEN_ISSUE) {
            TQ_CHECK_MEM_EQ(d.u.token_issue.hash, c.u.token_issue.hash, 32);
        }
    }
}

static void test_decode_never_trusts(struct tq_arena *arena, uint64_t *rng) {
    static uint8_t buf[1 << 16], mut[(1 << 16) + 64], again[1 << 17];
    uint64_t accepted = 0, refused = 0;
    for (int round = 0; round < 150000; round++) {
        struct tq_cmd c = sample((enum tq_cmd_type)(1 + tq_test_rand_below(rng, TQ_CMD_TYPE_MAX)));
        size_t n = tq_cmd_encode(&c, buf, sizeof(buf));
        size_t m = n;
        memcpy(mut, buf, n);
        switch (tq_test_rand_below(rng, 6)) {
        case 0:
            mut[tq_test_rand_below(rng, n)] ^= (uint8_t)(1u << tq_test_rand_below(rng, 8));
            break;
        case 1: mut[tq_test_rand_below(rng, n)] = (uint8_t)tq_test_rand(rng); break;
        case 2: m = tq_test_rand_below(rng, n); break;
        case 3:
            for (int k = 0; k < 8; k++)
                mut[n + k] = (uint8_t)tq_test_rand(rng);
            m = n + 1 + tq_test_rand_below(rng, 8);
            break;
        case 4:
            m = tq_test_rand_below(rng, 128);
            for (size_t k = 0; k < m; k++)
                mut[k] = (uint8_t)tq_test_rand(rng);
            if (m > 0) mut[0] = 1;
            if (m > 1) mut[1] = (uint8_t)(1 + tq_test_rand_below(rng, TQ_CMD_TYPE_MAX));
            break;
        default: {
            /* a length field near the start of the body made huge */
            size_t at = 26 + tq_test_rand_below(rng, n > 30 ? n - 30 : 1);
            if (at + 4 <= n) memset(mut + at, 0xff, 4);
            break;
        }
        }
        /* decode from an exact-size heap copy so ASan sees any over-read */
        uint8_t *exact = tq_xalloc(m == 0 ? 1 : m);
        memcpy(exact, mut, m);
        struct tq_cmd d;
        struct tq_error err;
        tq_arena_reset(arena);
        enum tq_err e = tq_cmd_decode(exact, m, &d, arena, &err);
        TQ_CHECK(e == TQ_OK || e == TQ_ERR_CORRUPT);
        if (e == TQ_OK) {
            accepted++;
            TQ_CHECK_UEQ(tq_cmd_encode(&d, again, sizeof(again)), m);
            TQ_CHECK_MEM_EQ(again, exact, m);
        } else {
            refused++;
        }
        tq_free(exact, m == 0 ? 1 : m);
    }
    printf("test_state_codec: %" PRIu64 " mutated inputs accepted, %" PRIu64 " refused\n", accepted,
           refused);
    TQ_CHECK_GT(accepted, 0);
    TQ_CHECK_GT(refused, 0);
    struct tq_cmd d;
    struct tq_error err;
    TQ_CHECK_ERR(tq_cmd_decode(NULL, 0, &d, arena, &err), TQ_ERR_CORRUPT, &err);
}

/* Whatever decodes must be safe to apply: mutated records that the decoder accepts are applied
 * to a populated state. apply may refuse them (with an expected code, changing nothing) or
 * accept them; it must never abort, and the invariants must hold throughout. */
static void test_apply_accepts_only_valid(struct tq_arena *arena, uint64_t *rng) {
    struct tq_state *s = tq_state_new(NULL);
    uint64_t lsn = 0;
    struct tq_error err;
    /* population: tenant 1..2, queues, agents, a few tickets (ids small, like the samples) */
    for (int t = 0; t < 2; t++) {
        struct tq_cmd c = sample(TQ_CMD_TENANT_CREATE);
        c.tenant_id = 0;
        c.actor_agent_id = 0;
        TQ_CHECK_OK(tq_state_apply(s, ++lsn, &c, NULL, NULL, &err), &err);
        for (int k = 0; k < 4; k++) {
            struct tq_cmd q = sample(TQ_CMD_QUEUE_CREATE);
            q.tenant_id = (uint64_t)t + 1;
            q.actor_agent_id = 0;
            TQ_CHECK_OK(tq_state_apply(s, ++lsn, &q, NULL, NULL, &err), &err);
            struct tq_cmd a = sample(TQ_CMD_AGENT_CREATE);
            a.tenant_id = (uint64_t)t + 1;
            a.actor_agent_id = 0;
            TQ_CHECK_OK(tq_state_apply(s, ++lsn, &a, NULL, NULL, &err), &err);
        }
    }
    static uint8_t buf[1 << 16];
    uint32_t applied = 0, refused = 0;
    for (int round = 0; round < 20000; round++) {
        struct tq_cmd c = sample((enum tq_cmd_type)(1 + tq_test_rand_below(rng, TQ_CMD_TYPE_MAX)));
        c.tenant_id = 1 + tq_test_rand_below(rng, 3);
        c.actor_agent_id = tq_test_rand_below(rng, 3) == 0 ? 1 + tq_test_rand_below(rng, 10) : 0;
        c.now_ms += (uint64_t)round * 60000;
        size_t n = tq_cmd_encode(&c, buf, sizeof(buf));
        for (int k = 0; k < 3; k++) {
            size_t at = 26 + tq_test_rand_below(rng, n - 26);
            buf[at] = (uint8_t)tq_test_rand(rng);
        }
        struct tq_cmd d;
        tq_arena_reset(arena);
        if (tq_cmd_decode(buf, n, &d, arena, &err) != TQ_OK) continue;
        uint8_t before[16], after[16];
        bool check = round % 16 == 0;
        if (check) tq_state_digest(s, before);
        enum tq_err e = tq_state_apply(s, lsn + 1, &d, NULL, NULL, &err);
        TQ_CHECK(e != TQ_ERR_INTERNAL && e != TQ_ERR_CORRUPT && e != TQ_ERR_IO);
        if (e == TQ_OK) {
            lsn++;
            applied++;
        } else {
            refused++;
            if (check) {
                tq_state_digest(s, after);
                TQ_CHECK_MEM_EQ(before, after, 16);
            }
        }
        if (round % 500 == 0) TQ_CHECK(tq_state_check_invariants(s, &err));
    }
    TQ_CHECK(tq_state_check_invariants(s, &err));
    printf("test_state_codec: mutated commands applied %u, refused %u\n", applied, refused);
    TQ_CHECK_GT(applied, 0);
    TQ_CHECK_GT(refused, 0);
    tq_state_free(s);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_state_codec");
    struct tq_arena arena;
    tq_arena_init(&arena, 1 << 16);
    static uint8_t buf[1 << 16];
    test_round_trip(&arena, buf, sizeof(buf));
    test_decode_never_trusts(&arena, &rng);
    test_apply_accepts_only_valid(&arena, &rng);
    tq_arena_destroy(&arena);
    printf("test_state_codec: ok\n");
    return 0;
}
