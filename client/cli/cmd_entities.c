/* client/cli/cmd_entities.c: queue create/update/list/show, agent create/update/show,
 * customer create/show/lookup/link/merge.
 *
 * Thin mappings from parsed options to one Request each; an option that is not given leaves
 * the field unset (has_x false), so updates change only what the command line names.
 */
#include "cli.h"

#include <string.h>

/* Sets an optional uint32 field from a U64 option; returns false (after the usage message) if
 * the value does not fit. */
static bool opt_u32(const struct cli *cli, const char *name, protobuf_c_boolean *has,
                    uint32_t *out) {
    if (!cli_has(cli, name)) return true;
    uint64_t v = cli_u64(cli, name);
    if (v > UINT32_MAX) {
        cli_usage_error("%s must be at most %u", name, UINT32_MAX);
        return false;
    }
    *has = 1;
    *out = (uint32_t)v;
    return true;
}

/* ---- queue ------------------------------------------------------------------------------- */

static int run_queue_create(struct cli *cli) {
    Ticketq__QueueCreate op = TICKETQ__QUEUE_CREATE__INIT;
    op.name = mut(cli_str(cli, "NAME"));
    op.has_auto_assign = cli_has(cli, "--auto-assign");
    op.auto_assign = op.has_auto_assign;
    op.has_assignment_timeout_ms = cli_has(cli, "--assignment-timeout");
    op.assignment_timeout_ms = cli_u64(cli, "--assignment-timeout");
    REQ(req, queue_create, QUEUE_CREATE, &op);
    return cli_call_print(cli, &req);
}

static int run_queue_update(struct cli *cli) {
    Ticketq__QueueUpdate op = TICKETQ__QUEUE_UPDATE__INIT;
    op.queue_id = cli_u64(cli, "QUEUE_ID");
    op.name = mut(cli_str(cli, "--name"));
    op.has_auto_assign = cli_has(cli, "--auto-assign");
    op.auto_assign = cli_u64(cli, "--auto-assign") != 0;
    op.has_assignment_timeout_ms = cli_has(cli, "--assignment-timeout");
    op.assignment_timeout_ms = cli_u64(cli, "--assignment-timeout");
    REQ(req, queue_update, QUEUE_UPDATE, &op);
    return cli_call_print(cli, &req);
}

static int run_queue_list(struct cli *cli) {
    Ticketq__QueuesGet op = TICKETQ__QUEUES_GET__INIT;
    REQ(req, queues_get, QUEUES_GET, &op);
    return cli_call_print(cli, &req);
}

static int run_queue_show(struct cli *cli) {
    Ticketq__QueueList op = TICKETQ__QUEUE_LIST__INIT;
    op.queue_id = cli_u64(cli, "QUEUE_ID");
    if (!opt_u32(cli, "--limit", &op.has_limit, &op.limit)) return CLI_EXIT_USAGE;
    REQ(req, queue_list, QUEUE_LIST, &op);
    return cli_call_print(cli, &req);
}

/* ---- agent ------------------------------------------------------------------------------- */

static int run_agent_create(struct cli *cli) {
    Ticketq__AgentCreate op = TICKETQ__AGENT_CREATE__INIT;
    op.name = mut(cli_str(cli, "NAME"));
    if (!opt_u32(cli, "--capacity-live", &op.has_capacity_live, &op.capacity_live) ||
        !opt_u32(cli, "--capacity-async", &op.has_capacity_async, &op.capacity_async)) {
        return CLI_EXIT_USAGE;
    }
    REQ(req, agent_create, AGENT_CREATE, &op);
    return cli_call_print(cli, &req);
}

static int run_agent_update(struct cli *cli) {
    Ticketq__AgentUpdate op = TICKETQ__AGENT_UPDATE__INIT;
    op.has_agent_id = cli_has(cli, "AGENT_ID");
    op.agent_id = cli_u64(cli, "AGENT_ID");
    op.name = mut(cli_str(cli, "--name"));
    op.has_presence = cli_has(cli, "--presence");
    op.presence = (Ticketq__Presence)cli_opt(cli, "--presence")->enum_value;
    if (!opt_u32(cli, "--capacity-live", &op.has_capacity_live, &op.capacity_live) ||
        !opt_u32(cli, "--capacity-async", &op.has_capacity_async, &op.capacity_async)) {
        return CLI_EXIT_USAGE;
    }
    REQ(req, agent_update, AGENT_UPDATE, &op);
    return cli_call_print(cli, &req);
}

static int run_agent_show(struct cli *cli) {
    Ticketq__AgentGet op = TICKETQ__AGENT_GET__INIT;
    op.has_agent_id = cli_has(cli, "AGENT_ID");
    op.agent_id = cli_u64(cli, "AGENT_ID");
    REQ(req, agent_get, AGENT_GET, &op);
    return cli_call_print(cli, &req);
}

/* ---- customer ---------------------------------------------------------------------------- */

static int run_customer_create(struct cli *cli) {
    Ticketq__CustomerCreate op = TICKETQ__CUSTOMER_CREATE__INIT;
    Ticketq__Identity identity = TICKETQ__IDENTITY__INIT;
    op.name = mut(cli_str(cli, "--name"));
    op.language = mut(cli_str(cli, "--language"));
    if (cli_has(cli, "--channel") != cli_has(cli, "--id")) {
        return cli_usage_error("--channel and --id go together");
    }
    if (cli_has(cli, "--id")) {
        identity.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
        identity.external_id = mut(cli_str(cli, "--id"));
        op.identity = &identity;
    }
    REQ(req, customer_create, CUSTOMER_CREATE, &op);
    return cli_call_print(cli, &req);
}

static int run_customer_show(struct cli *cli) {
    Ticketq__CustomerGet op = TICKETQ__CUSTOMER_GET__INIT;
    op.customer_id = cli_u64(cli, "CUSTOMER_ID");
    REQ(req, customer_get, CUSTOMER_GET, &op);
    return cli_call_print(cli, &req);
}

static int run_customer_lookup(struct cli *cli) {
    Ticketq__Identity identity = TICKETQ__IDENTITY__INIT;
    identity.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
    identity.external_id = mut(cli_str(cli, "--id"));
    Ticketq__CustomerLookup op = TICKETQ__CUSTOMER_LOOKUP__INIT;
    op.identity = &identity;
    REQ(req, customer_lookup, CUSTOMER_LOOKUP, &op);
    return cli_call_print(cli, &req);
}

static int run_customer_link(struct cli *cli) {
    Ticketq__Identity identity = TICKETQ__IDENTITY__INIT;
    identity.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
    identity.external_id = mut(cli_str(cli, "--id"));
    Ticketq__CustomerLink op = TICKETQ__CUSTOMER_LINK__INIT;
    op.customer_id = cli_u64(cli, "CUSTOMER_ID");
    op.identity = &identity;
    REQ(req, customer_link, CUSTOMER_LINK, &op);
    return cli_call_print(cli, &req);
}

static int run_customer_merge(struct cli *cli) {
    Ticketq__CustomerMerge op = TICKETQ__CUSTOMER_MERGE__INIT;
    op.survivor_id = cli_u64(cli, "SURVIVOR_ID");
    op.merged_id = cli_u64(cli, "MERGED_ID");
    REQ(req, customer_merge, CUSTOMER_MERGE, &op);
    return cli_call_print(cli, &req);
}

static int run_customer_erase(struct cli *cli) {
    Ticketq__CustomerErase op = TICKETQ__CUSTOMER_ERASE__INIT;
    op.customer_id = cli_u64(cli, "CUSTOMER_ID");
    REQ(req, customer_erase, CUSTOMER_ERASE, &op);
    return cli_call_print(cli, &req);
}

/* ---- table ------------------------------------------------------------------------------- */

#define END                                                                                        \
    { NULL, OPT_STR, false, NULL, NULL }

static const struct cli_opt queue_create_opts[] = {
    {"NAME", OPT_STR, true, "the queue's name", NULL},
    {"--auto-assign", OPT_FLAG, false, "assign new tickets to online agents", NULL},
    {"--assignment-timeout", OPT_MS, false, "re-route an unanswered assignment after this", NULL},
    END,
};
static const struct cli_opt queue_update_opts[] = {
    {"QUEUE_ID", OPT_U64, true, "the queue", NULL},
    {"--name", OPT_STR, false, "new name", NULL},
    {"--auto-assign", OPT_BOOL, false, "assign new tickets to online agents", NULL},
    {"--assignment-timeout", OPT_MS, false, "re-route an unanswered assignment after this", NULL},
    END,
};
static const struct cli_opt no_opts[] = {END};
static const struct cli_opt queue_show_opts[] = {
    {"QUEUE_ID", OPT_U64, true, "the queue", NULL},
    {"--limit", OPT_U64, false, "tickets to list (default 50, max 1000)", NULL},
    END,
};
static const struct cli_opt agent_create_opts[] = {
    {"NAME", OPT_STR, true, "the agent's name", NULL},
    {"--capacity-live", OPT_U64, false, "max concurrent chat-like tickets", NULL},
    {"--capacity-async", OPT_U64, false, "max concurrent email-like tickets", NULL},
    END,
};
static const struct cli_opt agent_update_opts[] = {
    {"AGENT_ID", OPT_U64, false, "the agent (default: the token's agent)", NULL},
    {"--name", OPT_STR, false, "new name", NULL},
    {"--presence", OPT_ENUM, false, "presence", &ticketq__presence__descriptor},
    {"--capacity-live", OPT_U64, false, "max concurrent chat-like tickets", NULL},
    {"--capacity-async", OPT_U64, false, "max concurrent email-like tickets", NULL},
    END,
};
static const struct cli_opt agent_show_opts[] = {
    {"AGENT_ID", OPT_U64, false, "the agent (default: the token's agent)", NULL},
    END,
};
static const struct cli_opt customer_create_opts[] = {
    {"--name", OPT_STR, false, "display name", NULL},
    {"--language", OPT_STR, false, "preferred language, e.g. zh-CN", NULL},
    {"--channel", OPT_ENUM, false, "channel of a first identity", &ticketq__channel__descriptor},
    {"--id", OPT_STR, false, "identity on that channel (email, phone, ...)", NULL},
    END,
};
static const struct cli_opt customer_show_opts[] = {
    {"CUSTOMER_ID", OPT_U64, true, "the customer", NULL},
    END,
};
static const struct cli_opt customer_lookup_opts[] = {
    {"--channel", OPT_ENUM, true, "channel", &ticketq__channel__descriptor},
    {"--id", OPT_STR, true, "identity on that channel", NULL},
    END,
};
static const struct cli_opt customer_link_opts[] = {
    {"CUSTOMER_ID", OPT_U64, true, "the customer", NULL},
    {"--channel", OPT_ENUM, true, "channel", &ticketq__channel__descriptor},
    {"--id", OPT_STR, true, "identity on that channel", NULL},
    END,
};
static const struct cli_opt customer_merge_opts[] = {
    {"SURVIVOR_ID", OPT_U64, true, "the customer that remains", NULL},
    {"MERGED_ID", OPT_U64, true, "the customer merged into it", NULL},
    END,
};

const struct cli_cmd cli_cmds_entities[] = {
    {"queue create", "create a queue", queue_create_opts, run_queue_create},
    {"queue update", "rename a queue or change its assignment", queue_update_opts,
     run_queue_update},
    {"queue list", "every queue with its depth", no_opts, run_queue_list},
    {"queue show", "a queue and its waiting tickets", queue_show_opts, run_queue_show},
    {"agent create", "create an agent", agent_create_opts, run_agent_create},
    {"agent update", "presence, capacity or name of an agent", agent_update_opts, run_agent_update},
    {"agent show", "an agent with its load", agent_show_opts, run_agent_show},
    {"customer create", "create a customer", customer_create_opts, run_customer_create},
    {"customer show", "a customer with its identities", customer_show_opts, run_customer_show},
    {"customer lookup", "find a customer by channel identity", customer_lookup_opts,
     run_customer_lookup},
    {"customer link", "add a channel identity to a customer", customer_link_opts,
     run_customer_link},
    {"customer merge", "merge one customer into another", customer_merge_opts, run_customer_merge},
    {"customer erase", "right to erasure: forget the customer's name and identities",
     customer_show_opts, run_customer_erase},
    {NULL, NULL, NULL, NULL},
};
