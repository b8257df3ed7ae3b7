/* server/auth.h: who may do what. The role table lives in auth.c and nowhere else; it is
 * printed in docs/protocol.md ("Roles") from the same rows.
 */
#ifndef TQ_SERVER_AUTH_H
#define TQ_SERVER_AUTH_H

#include "state/state.h"

#include <stdbool.h>
#include <stdint.h>

#define TQ_ROLE_BIT(r) (1u << (r))
#define TQ_ROLES_ALL   0xfu

/* How an operation chooses its tenant. */
enum tq_auth_scope {
    TQ_SCOPE_NONE = 0,          /* no tenant (Auth, Ping, TenantCreate, SnapshotNow) */
    TQ_SCOPE_TENANT = 1,        /* a tenant is required: the token's, or Request.tenant_id
                                   for a server admin */
    TQ_SCOPE_TENANT_OR_ALL = 2, /* Stats: a server admin without tenant_id sees all */
    TQ_SCOPE_TOKEN = 3,         /* TokenIssue/Revoke: tenant, or none for server tokens */
};

struct tq_auth_rule {
    int op;           /* Request op case (protobuf field number) */
    const char *name; /* for docs, metrics and messages */
    uint32_t roles;   /* TQ_ROLE_BIT mask of roles allowed */
    enum tq_auth_scope scope;
    bool mutation;   /* writes a command record */
    bool agent_self; /* an agent token acts only as its own agent */
};

/* The rule for op, or NULL for an unknown op. */
const struct tq_auth_rule *tq_auth_rule(int op);
/* All rules in op order (for docs and metrics); *count_out rows. */
const struct tq_auth_rule *tq_auth_rules(uint32_t *count_out);
/* Largest op case + 1 (size of per-op arrays). */
#define TQ_AUTH_OP_LIMIT 50

/* Hashes a presented token (the exact bytes, prefix included) with SHA-256. */
void tq_auth_token_hash(const char *token, size_t len, uint8_t hash_out[32]);

#endif
