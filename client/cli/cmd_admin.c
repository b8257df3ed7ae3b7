/* client/cli/cmd_admin.c: ping, stats, tenant create/settings/sla/hours, token issue/revoke.
 *
 * Each run function turns its parsed options (already type-checked by args.c) into one
 * Request and prints the response with cli_call_print. Compound values that the option
 * parser cannot check alone ("whatsapp=24h", SLA policy specs, weekday hours) are parsed here,
 * fully, before anything is sent: a usage error never reaches the server.
 */
#include "cli.h"

#include "tq_assert.h"

#include <stdlib.h>
#include <string.h>

/* ---- ping, stats ------------------------------------------------------------------------- */

static int run_ping(struct cli *cli) {
    Ticketq__Ping op = TICKETQ__PING__INIT;
    REQ(req, ping, PING, &op);
    return cli_call_print(cli, &req);
}

static int run_stats(struct cli *cli) {
    Ticketq__Stats op = TICKETQ__STATS__INIT;
    REQ(req, stats, STATS, &op);
    return cli_call_print(cli, &req);
}

/* ---- tenant ------------------------------------------------------------------------------ */

static int run_tenant_create(struct cli *cli) {
    Ticketq__TenantCreate op = TICKETQ__TENANT_CREATE__INIT;
    op.name = mut(cli_str(cli, "NAME"));
    REQ(req, tenant_create, TENANT_CREATE, &op);
    return cli_call_print(cli, &req);
}

static int run_tenant_settings(struct cli *cli) {
    Ticketq__TenantSettings op = TICKETQ__TENANT_SETTINGS__INIT;
    op.has_auto_close_ms = cli_has(cli, "--auto-close");
    op.auto_close_ms = cli_u64(cli, "--auto-close");
    if (cli_has(cli, "--sla-warning-permille")) {
        uint64_t v = cli_u64(cli, "--sla-warning-permille");
        if (v > 1000) return cli_usage_error("--sla-warning-permille must be 0..1000");
        op.has_sla_warning_permille = 1;
        op.sla_warning_permille = (uint32_t)v;
    }
    if (cli_has(cli, "--outbox-attempts")) {
        uint64_t v = cli_u64(cli, "--outbox-attempts");
        if (v > UINT32_MAX) return cli_usage_error("--outbox-attempts is too large");
        op.has_outbox_attempts_max = 1;
        op.outbox_attempts_max = (uint32_t)v;
    }
    const struct cli_val *windows = cli_opt(cli, "--reply-window");
    const struct cli_val *queues = cli_opt(cli, "--default-queue");
    Ticketq__ChannelDuration durations[CLI_LIST_MAX], *duration_ptrs[CLI_LIST_MAX];
    Ticketq__ChannelQueue channel_queues[CLI_LIST_MAX], *queue_ptrs[CLI_LIST_MAX];
    char key[32];
    for (size_t i = 0; i < windows->list_count; i++) {
        const char *value = cli_split_pair(windows->list[i], key, sizeof(key));
        int channel;
        uint64_t ms;
        if (value == NULL) return cli_usage_error("--reply-window wants CHANNEL=DURATION");
        if (!cli_parse_enum(&ticketq__channel__descriptor, "channel", key, &channel)) {
            return CLI_EXIT_USAGE;
        }
        if (!cli_parse_ms(value, &ms)) return cli_usage_error("--reply-window: bad duration");
        ticketq__channel_duration__init(&durations[i]);
        durations[i].channel = (Ticketq__Channel)channel;
        durations[i].ms = ms;
        duration_ptrs[i] = &durations[i];
    }
    for (size_t i = 0; i < queues->list_count; i++) {
        const char *value = cli_split_pair(queues->list[i], key, sizeof(key));
        int channel;
        uint64_t queue_id;
        if (value == NULL) return cli_usage_error("--default-queue wants CHANNEL=QUEUE_ID");
        if (!cli_parse_enum(&ticketq__channel__descriptor, "channel", key, &channel)) {
            return CLI_EXIT_USAGE;
        }
        if (!cli_parse_u64(value, &queue_id)) return cli_usage_error("--default-queue: bad id");
        ticketq__channel_queue__init(&channel_queues[i]);
        channel_queues[i].channel = (Ticketq__Channel)channel;
        channel_queues[i].queue_id = queue_id;
        queue_ptrs[i] = &channel_queues[i];
    }
    op.n_reply_windows = windows->list_count;
    op.reply_windows = duration_ptrs;
    op.n_default_queues = queues->list_count;
    op.default_queues = queue_ptrs;
    REQ(req, tenant_settings, TENANT_SETTINGS, &op);
    return cli_call_print(cli, &req);
}

/* Storage for one parsed SLA policy spec. */
struct policy_spec {
    Ticketq__SlaPolicy policy;
    Ticketq__SlaTargets targets;
    uint64_t ms[4][4]; /* metric (first_reply..agent_work) x priority */
    char name[128];
    char tag[128];
};

/* "4h" (all priorities) or "4h/1h/30m/10m" (low/normal/high/urgent). */
static bool parse_targets(const char *text, uint64_t out[4]) {
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", text);
    char *save = NULL;
    size_t n = 0;
    for (char *t = strtok_r(buf, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
        if (n == 4 || !cli_parse_ms(t, &out[n])) return false;
        n++;
    }
    if (n == 1) out[1] = out[2] = out[3] = out[0];
    return n == 1 || n == 4;
}

/* "name=std,queue=2,channel=whatsapp,tag=vip,first_reply=4h/1h/30m/10m,business_hours=true" */
static int parse_policy(const char *text, struct policy_spec *p) {
    static const char *const metrics[] = {"first_reply", "next_reply", "requester_wait",
                                          "agent_work"};
    memset(p, 0, sizeof(*p));
    ticketq__sla_policy__init(&p->policy);
    ticketq__sla_targets__init(&p->targets);
    char buf[512];
    if (strlen(text) >= sizeof(buf)) return cli_usage_error("--policy spec too long");
    snprintf(buf, sizeof(buf), "%s", text);
    char *save = NULL;
    bool have_metric[4] = {false, false, false, false};
    for (char *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char key[32];
        const char *value = cli_split_pair(item, key, sizeof(key));
        if (value == NULL) return cli_usage_error("--policy: \"%s\" is not KEY=VALUE", item);
        uint64_t u = 0;
        int e = 0;
        size_t m = 0;
        for (; m < 4 && strcmp(key, metrics[m]) != 0; m++) {
        }
        if (m < 4) {
            if (!parse_targets(value, p->ms[m])) {
                return cli_usage_error("--policy: %s wants D or D/D/D/D (low/normal/high/urgent)",
                                       key);
            }
            have_metric[m] = true;
        } else if (strcmp(key, "name") == 0) {
            snprintf(p->name, sizeof(p->name), "%s", value);
        } else if (strcmp(key, "tag") == 0) {
            snprintf(p->tag, sizeof(p->tag), "%s", value);
            p->policy.tag = p->tag;
        } else if (strcmp(key, "queue") == 0) {
            if (!cli_parse_u64(value, &u)) return cli_usage_error("--policy: queue wants an id");
            p->policy.has_queue_id = 1;
            p->policy.queue_id = u;
        } else if (strcmp(key, "channel") == 0) {
            if (!cli_parse_enum(&ticketq__channel__descriptor, "channel", value, &e)) {
                return CLI_EXIT_USAGE;
            }
            p->policy.has_channel = 1;
            p->policy.channel = (Ticketq__Channel)e;
        } else if (strcmp(key, "business_hours") == 0) {
            p->policy.has_business_hours = 1;
            p->policy.business_hours = strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
        } else {
            return cli_usage_error("--policy: unknown key %s (name, queue, channel, tag, "
                                   "first_reply, next_reply, requester_wait, agent_work, "
                                   "business_hours)",
                                   key);
        }
    }
    if (p->name[0] == '\0') return cli_usage_error("--policy needs name=NAME");
    p->policy.name = p->name;
    size_t *counts[4] = {&p->targets.n_first_reply_ms, &p->targets.n_next_reply_ms,
                         &p->targets.n_requester_wait_ms, &p->targets.n_agent_work_ms};
    uint64_t **arrays[4] = {&p->targets.first_reply_ms, &p->targets.next_reply_ms,
                            &p->targets.requester_wait_ms, &p->targets.agent_work_ms};
    for (size_t m = 0; m < 4; m++) {
        *counts[m] = have_metric[m] ? 4 : 0;
        *arrays[m] = have_metric[m] ? p->ms[m] : NULL;
    }
    p->policy.targets = &p->targets;
    return -1;
}

static int run_tenant_sla(struct cli *cli) {
    const struct cli_val *specs = cli_opt(cli, "--policy");
    static struct policy_spec policies[CLI_LIST_MAX]; /* static: ~50 KiB */
    Ticketq__SlaPolicy *ptrs[CLI_LIST_MAX];
    for (size_t i = 0; i < specs->list_count; i++) {
        int rc = parse_policy(specs->list[i], &policies[i]);
        if (rc >= 0) return rc;
        ptrs[i] = &policies[i].policy;
    }
    if (specs->list_count == 0 && !cli_has(cli, "--clear")) {
        return cli_usage_error("'tenant sla' needs --policy (or --clear to remove all)");
    }
    Ticketq__SlaPoliciesSet op = TICKETQ__SLA_POLICIES_SET__INIT;
    op.n_policies = specs->list_count;
    op.policies = ptrs;
    REQ(req, sla_policies_set, SLA_POLICIES_SET, &op);
    return cli_call_print(cli, &req);
}

/* "HH:MM" -> minutes after midnight (24:00 allowed as an end). */
static bool parse_hhmm(const char *text, size_t len, uint32_t *out) {
    if (len != 5 || text[2] != ':') return false;
    for (size_t i = 0; i < 5; i++) {
        if (i != 2 && (text[i] < '0' || text[i] > '9')) return false;
    }
    uint32_t h = (uint32_t)((text[0] - '0') * 10 + (text[1] - '0'));
    uint32_t m = (uint32_t)((text[3] - '0') * 10 + (text[4] - '0'));
    if (m > 59 || h > 24 || (h == 24 && m != 0)) return false;
    *out = h * 60 + m;
    return true;
}

static int run_tenant_hours(struct cli *cli) {
    static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    const struct cli_val *day_specs = cli_opt(cli, "--day");
    Ticketq__DayHours hours[CLI_LIST_MAX], *hour_ptrs[CLI_LIST_MAX];
    for (size_t i = 0; i < day_specs->list_count; i++) {
        char key[16];
        const char *value = cli_split_pair(day_specs->list[i], key, sizeof(key));
        const char *dash = value != NULL ? strchr(value, '-') : NULL;
        size_t d = 0;
        for (; d < 7 && (value == NULL || strcmp(key, days[d]) != 0); d++) {
        }
        ticketq__day_hours__init(&hours[i]);
        if (value == NULL || dash == NULL || d == 7 ||
            !parse_hhmm(value, (size_t)(dash - value), &hours[i].start_minute) ||
            !parse_hhmm(dash + 1, strlen(dash + 1), &hours[i].end_minute) ||
            hours[i].end_minute <= hours[i].start_minute) {
            return cli_usage_error("--day wants DAY=HH:MM-HH:MM with DAY one of sun, mon, tue, "
                                   "wed, thu, fri, sat (got \"%s\")",
                                   day_specs->list[i]);
        }
        hours[i].weekday = (uint32_t)d;
        hour_ptrs[i] = &hours[i];
    }
    const struct cli_val *holidays = cli_opt(cli, "--holiday");
    char *holiday_ptrs[CLI_LIST_MAX];
    for (size_t i = 0; i < holidays->list_count; i++) {
        const char *h = holidays->list[i];
        if (strlen(h) != 10 || h[4] != '-' || h[7] != '-') {
            return cli_usage_error("--holiday wants YYYY-MM-DD (got \"%s\")", h);
        }
        holiday_ptrs[i] = mut(h);
    }
    Ticketq__BusinessHoursSet op = TICKETQ__BUSINESS_HOURS_SET__INIT;
    op.tz_name = mut(cli_str(cli, "--tz"));
    op.n_hours = day_specs->list_count;
    op.hours = hour_ptrs;
    op.n_holidays = holidays->list_count;
    op.holidays = holiday_ptrs;
    REQ(req, business_hours_set, BUSINESS_HOURS_SET, &op);
    return cli_call_print(cli, &req);
}

/* ---- token ------------------------------------------------------------------------------- */

static int run_token_issue(struct cli *cli) {
    Ticketq__TokenIssue op = TICKETQ__TOKEN_ISSUE__INIT;
    op.role = (Ticketq__Role)cli_opt(cli, "--role")->enum_value;
    op.has_agent_id = cli_has(cli, "--agent");
    op.agent_id = cli_u64(cli, "--agent");
    if (op.role == TICKETQ__ROLE__ROLE_AGENT && !op.has_agent_id) {
        return cli_usage_error("--role agent needs --agent ID");
    }
    op.name = mut(cli_str(cli, "--name"));
    REQ(req, token_issue, TOKEN_ISSUE, &op);
    return cli_call_print(cli, &req);
}

static int run_token_revoke(struct cli *cli) {
    Ticketq__TokenRevoke op = TICKETQ__TOKEN_REVOKE__INIT;
    op.token_id = cli_u64(cli, "TOKEN_ID");
    REQ(req, token_revoke, TOKEN_REVOKE, &op);
    return cli_call_print(cli, &req);
}

/* ---- table ------------------------------------------------------------------------------- */

static const struct cli_opt no_opts[] = {{NULL, OPT_STR, false, NULL, NULL}};

static const struct cli_opt tenant_create_opts[] = {
    {"NAME", OPT_STR, true, "the tenant's name", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

static const struct cli_opt tenant_settings_opts[] = {
    {"--auto-close", OPT_MS, false, "close solved tickets after this long (0 = never)", NULL},
    {"--sla-warning-permille", OPT_U64, false, "warn at this fraction of an SLA target", NULL},
    {"--reply-window", OPT_LIST, false, "CHANNEL=DURATION, e.g. whatsapp=24h", NULL},
    {"--default-queue", OPT_LIST, false, "CHANNEL=QUEUE_ID: ingest routing", NULL},
    {"--outbox-attempts", OPT_U64, false, "delivery attempts before an outbox message fails", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

static const struct cli_opt tenant_sla_opts[] = {
    {"--policy", OPT_LIST, false,
     "name=N[,queue=ID][,channel=C][,tag=T][,first_reply=D|D/D/D/D][,next_reply=..]"
     "[,requester_wait=..][,agent_work=..][,business_hours=true]; first match wins",
     NULL},
    {"--clear", OPT_FLAG, false, "remove every policy", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

static const struct cli_opt tenant_hours_opts[] = {
    {"--tz", OPT_STR, true, "IANA time zone, e.g. Asia/Shanghai", NULL},
    {"--day", OPT_LIST, false, "DAY=HH:MM-HH:MM, e.g. mon=09:00-18:00 (none: 24x7)", NULL},
    {"--holiday", OPT_LIST, false, "local date YYYY-MM-DD", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

static const struct cli_opt token_issue_opts[] = {
    {"--role", OPT_ENUM, true, "the token's role", &ticketq__role__descriptor},
    {"--agent", OPT_U64, false, "agent id (role agent)", NULL},
    {"--name", OPT_STR, false, "label for operators", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

static const struct cli_opt token_revoke_opts[] = {
    {"TOKEN_ID", OPT_U64, true, "the token to revoke", NULL},
    {NULL, OPT_STR, false, NULL, NULL},
};

const struct cli_cmd cli_cmds_admin[] = {
    {"ping", "check the connection and the token", no_opts, run_ping},
    {"stats", "counts by status, messages, customers, queue depths, SLA breaches, last LSN",
     no_opts, run_stats},
    {"tenant create", "create a tenant (server admin)", tenant_create_opts, run_tenant_create},
    {"tenant settings", "auto-close, SLA warning, reply windows, default queues",
     tenant_settings_opts, run_tenant_settings},
    {"tenant sla", "replace the tenant's SLA policies", tenant_sla_opts, run_tenant_sla},
    {"tenant hours", "set business hours and holidays", tenant_hours_opts, run_tenant_hours},
    {"token issue", "issue a token (the secret is shown once)", token_issue_opts, run_token_issue},
    {"token revoke", "revoke a token at once", token_revoke_opts, run_token_revoke},
    {NULL, NULL, NULL, NULL},
};
