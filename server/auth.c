/* server/auth.c: the role table, the single place that says which role may do what.
 *
 * Roles (docs/protocol.md "Roles"): the server admin may do everything, on any tenant named by
 * Request.tenant_id; a tenant admin everything within its tenant except creating tenants and
 * server tokens and snapshots; an agent acts only as its own agent (claim, reply, update,
 * release, transfer, presence) and reads its tenant; an integration (channel gateway, webhook
 * dispatcher) ingests, works the outbox, subscribes, acks consumers, manages customer
 * identities and reads. dispatch.c consults tq_auth_rule() before touching the state, and
 * re-checks the token on every request so a revocation takes effect at once.
 */
#include "auth.h"

#include "sha256.h"
#include "ticketq.pb-c.h"
#include "tq_assert.h"

#define SA TQ_ROLE_BIT(TQ_ROLE_SERVER_ADMIN)
#define TA TQ_ROLE_BIT(TQ_ROLE_TENANT_ADMIN)
#define AG TQ_ROLE_BIT(TQ_ROLE_AGENT)
#define IN TQ_ROLE_BIT(TQ_ROLE_INTEGRATION)
#define R(op_, name_, roles_, scope_, mut_, self_)                                                 \
    { TICKETQ__REQUEST__OP_##op_, name_, roles_, TQ_SCOPE_##scope_, mut_, self_ }

/* op, name, roles, scope, mutation, agent acts as itself */
static const struct tq_auth_rule k_rules[] = {
    R(AUTH, "auth", SA | TA | AG | IN, NONE, false, false),
    R(PING, "ping", SA | TA | AG | IN, NONE, false, false),
    R(BATCH, "batch", SA | TA | AG | IN, NONE, false, false),
    R(TENANT_CREATE, "tenant_create", SA, NONE, true, false),
    R(TENANT_SETTINGS, "tenant_settings", SA | TA, TENANT, true, false),
    R(SLA_POLICIES_SET, "sla_policies_set", SA | TA, TENANT, true, false),
    R(BUSINESS_HOURS_SET, "business_hours_set", SA | TA, TENANT, true, false),
    R(TOKEN_ISSUE, "token_issue", SA | TA, TOKEN, true, false),
    R(TOKEN_REVOKE, "token_revoke", SA | TA, TOKEN, true, false),
    R(QUEUE_CREATE, "queue_create", SA | TA, TENANT, true, false),
    R(QUEUE_UPDATE, "queue_update", SA | TA, TENANT, true, false),
    R(QUEUE_LIST, "queue_list", SA | TA | AG | IN, TENANT, false, false),
    R(QUEUES_GET, "queues_get", SA | TA | AG | IN, TENANT, false, false),
    R(AGENT_CREATE, "agent_create", SA | TA, TENANT, true, false),
    R(AGENT_UPDATE, "agent_update", SA | TA | AG, TENANT, true, true),
    R(AGENT_GET, "agent_get", SA | TA | AG | IN, TENANT, false, false),
    R(CUSTOMER_CREATE, "customer_create", SA | TA | IN, TENANT, true, false),
    R(CUSTOMER_GET, "customer_get", SA | TA | AG | IN, TENANT, false, false),
    R(CUSTOMER_LOOKUP, "customer_lookup", SA | TA | AG | IN, TENANT, false, false),
    R(CUSTOMER_LINK, "customer_link", SA | TA | IN, TENANT, true, false),
    R(CUSTOMER_MERGE, "customer_merge", SA | TA, TENANT, true, false),
    R(INGEST, "ingest", SA | TA | IN, TENANT, true, false),
    R(REPLY, "reply", SA | TA | AG, TENANT, true, true),
    R(TICKET_UPDATE, "ticket_update", SA | TA | AG, TENANT, true, true),
    R(CLAIM, "claim", SA | TA | AG, TENANT, true, true),
    R(RELEASE, "release", SA | TA | AG, TENANT, true, true),
    R(TRANSFER, "transfer", SA | TA | AG, TENANT, true, true),
    R(TICKET_MERGE, "ticket_merge", SA | TA, TENANT, true, false),
    R(TICKET_GET, "ticket_get", SA | TA | AG | IN, TENANT, false, false),
    R(SLA_NEAREST, "sla_nearest", SA | TA | AG | IN, TENANT, false, false),
    R(OUTBOX_TAKE, "outbox_take", SA | TA | IN, TENANT, true, false),
    R(OUTBOX_ACK, "outbox_ack", SA | TA | IN, TENANT, true, false),
    R(STATS, "stats", SA | TA | AG | IN, TENANT_OR_ALL, false, false),
    R(SUBSCRIBE, "subscribe", SA | TA | AG | IN, TENANT, false, false),
    R(UNSUBSCRIBE, "unsubscribe", SA | TA | AG | IN, NONE, false, false),
    R(CONSUMER_ACK, "consumer_ack", SA | TA | IN, TENANT, true, false),
    R(SNAPSHOT_NOW, "snapshot_now", SA, NONE, false, false),
    R(CUSTOMER_ERASE, "customer_erase", SA | TA, TENANT, true, false),
    R(COMPACT, "compact", SA, TENANT, false, false),
    R(COMPACT_STATUS, "compact_status", SA, NONE, false, false),
};

const struct tq_auth_rule *tq_auth_rule(int op) {
    for (size_t i = 0; i < TQ_ARRAY_COUNT(k_rules); i++) {
        if (k_rules[i].op == op) return &k_rules[i];
    }
    return NULL;
}

const struct tq_auth_rule *tq_auth_rules(uint32_t *count_out) {
    _Static_assert(TICKETQ__REQUEST__OP_COMPACT_STATUS < TQ_AUTH_OP_LIMIT, "per-op arrays");
    *count_out = (uint32_t)TQ_ARRAY_COUNT(k_rules);
    return k_rules;
}

void tq_auth_token_hash(const char *token, size_t len, uint8_t hash_out[32]) {
    TQ_ASSERT(token != NULL || len == 0);
    tq_sha256(token, len, hash_out);
}
