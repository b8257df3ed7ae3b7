/* client/cli/cmd_ticket.c: ingest, reply, note, ticket show/update/claim/release/transfer/
 * merge, sla nearest, outbox take/ack.
 *
 * Like the other command files: options checked by args.c, compound values (custom fields
 * KEY=VALUE) parsed here before sending, one Request per command, printed by render.c.
 */
#include "cli.h"

#include "tq_alloc.h"

#include <errno.h>
#include <string.h>

#define END                                                                                        \
    { NULL, OPT_STR, false, NULL, NULL }

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

/* The list values of an option as the char ** the generated structs want. */
static size_t list_of(const struct cli *cli, const char *name, char **out) {
    const struct cli_val *v = cli_opt(cli, name);
    for (size_t i = 0; i < v->list_count; i++)
        out[i] = mut(v->list[i]);
    return v->list_count;
}

/* A message body from --body TEXT or --body-file F ("-" = stdin), read whole and bounded by
 * the default frame size (the server's body limit is lower and it says so). */
struct body {
    const char *text;
    char *owned;
    size_t owned_bytes;
};

static int body_load(const struct cli *cli, struct body *b) {
    memset(b, 0, sizeof(*b));
    const char *text = cli_str(cli, "--body");
    const char *path = cli_str(cli, "--body-file");
    if ((text == NULL) == (path == NULL)) return cli_usage_error("give --body or --body-file");
    if (text != NULL) {
        b->text = text;
        return -1;
    }
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (fp == NULL) return cli_usage_error("--body-file %s: %s", path, strerror(errno));
    size_t cap = TQ_CLIENT_FRAME_BYTES_DEFAULT_MAX + 1;
    b->owned = tq_alloc(cap + 1);
    if (b->owned == NULL) {
        if (fp != stdin) fclose(fp);
        return cli_usage_error("--body-file: out of memory");
    }
    b->owned_bytes = cap + 1;
    size_t n = fread(b->owned, 1, cap, fp);
    bool failed = ferror(fp) != 0;
    if (fp != stdin) fclose(fp);
    if (failed || n == cap) {
        tq_free(b->owned, b->owned_bytes);
        b->owned = NULL;
        return cli_usage_error("--body-file %s: %s", path,
                               failed ? "read error" : "larger than 1 MiB");
    }
    if (memchr(b->owned, '\0', n) != NULL) {
        tq_free(b->owned, b->owned_bytes);
        b->owned = NULL;
        return cli_usage_error("--body-file %s: contains NUL bytes (not text)", path);
    }
    b->owned[n] = '\0';
    b->text = b->owned;
    return -1;
}

static void body_free(struct body *b) {
    if (b->owned != NULL) tq_free(b->owned, b->owned_bytes);
}

static int run_ingest(struct cli *cli) {
    Ticketq__Ingest op = TICKETQ__INGEST__INIT;
    op.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
    op.from = mut(cli_str(cli, "--from"));
    struct body body;
    int rc = body_load(cli, &body);
    if (rc >= 0) return rc;
    op.body = mut(body.text);
    op.customer_name = mut(cli_str(cli, "--name"));
    op.language = mut(cli_str(cli, "--language"));
    op.external_id = mut(cli_str(cli, "--external-id"));
    op.subject = mut(cli_str(cli, "--subject"));
    op.has_provider_ts_ms = cli_has(cli, "--provider-ts-ms");
    op.provider_ts_ms = cli_u64(cli, "--provider-ts-ms");
    op.has_queue_id = cli_has(cli, "--queue");
    op.queue_id = cli_u64(cli, "--queue");
    op.has_priority = cli_has(cli, "--priority");
    op.priority = (Ticketq__Priority)cli_opt(cli, "--priority")->enum_value;
    char *tags[CLI_LIST_MAX];
    op.n_tags = list_of(cli, "--tag", tags);
    op.tags = tags;
    REQ(req, ingest, INGEST, &op);
    rc = cli_call_print(cli, &req);
    body_free(&body);
    return rc;
}

static int reply_or_note(struct cli *cli, bool note) {
    Ticketq__Reply op = TICKETQ__REPLY__INIT;
    op.ticket_id = cli_u64(cli, "TICKET_ID");
    struct body body;
    int rc = body_load(cli, &body);
    if (rc >= 0) return rc;
    op.body = mut(body.text);
    op.has_internal_note = note;
    op.internal_note = note;
    op.has_agent_id = cli_has(cli, "--agent");
    op.agent_id = cli_u64(cli, "--agent");
    if (!note) {
        op.has_automated = cli_has(cli, "--automated");
        op.automated = op.has_automated;
        op.has_channel = cli_has(cli, "--channel");
        op.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
        op.has_set_status = cli_has(cli, "--status");
        op.set_status = (Ticketq__Status)cli_opt(cli, "--status")->enum_value;
    }
    REQ(req, reply, REPLY, &op);
    rc = cli_call_print(cli, &req);
    body_free(&body);
    return rc;
}

static int run_reply(struct cli *cli) {
    return reply_or_note(cli, false);
}
static int run_note(struct cli *cli) {
    return reply_or_note(cli, true);
}

static int run_ticket_show(struct cli *cli) {
    Ticketq__TicketGet op = TICKETQ__TICKET_GET__INIT;
    op.ticket_id = cli_u64(cli, "TICKET_ID");
    if (!opt_u32(cli, "--offset", &op.has_message_offset, &op.message_offset) ||
        !opt_u32(cli, "--limit", &op.has_message_limit, &op.message_limit)) {
        return CLI_EXIT_USAGE;
    }
    op.has_last = cli_has(cli, "--last");
    op.last = op.has_last;
    REQ(req, ticket_get, TICKET_GET, &op);
    return cli_call_print(cli, &req);
}

/* "key=value": an integer, true/false, or else a string. */
static void parse_custom_field(const char *text, char *key, size_t cap, Ticketq__CustomField *f) {
    const char *value = cli_split_pair(text, key, cap);
    ticketq__custom_field__init(f);
    f->key = key;
    uint64_t u;
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
        f->value_case = TICKETQ__CUSTOM_FIELD__VALUE_BOOL_VALUE;
        f->bool_value = value[0] == 't';
    } else if (cli_parse_u64(value, &u) && u <= INT64_MAX) {
        f->value_case = TICKETQ__CUSTOM_FIELD__VALUE_INT_VALUE;
        f->int_value = (int64_t)u;
    } else {
        f->value_case = TICKETQ__CUSTOM_FIELD__VALUE_STRING_VALUE;
        f->string_value = mut(value);
    }
}

static int run_ticket_update(struct cli *cli) {
    Ticketq__TicketUpdate op = TICKETQ__TICKET_UPDATE__INIT;
    op.ticket_id = cli_u64(cli, "TICKET_ID");
    op.has_status = cli_has(cli, "--status");
    op.status = (Ticketq__Status)cli_opt(cli, "--status")->enum_value;
    op.has_priority = cli_has(cli, "--priority");
    op.priority = (Ticketq__Priority)cli_opt(cli, "--priority")->enum_value;
    op.has_queue_id = cli_has(cli, "--queue");
    op.queue_id = cli_u64(cli, "--queue");
    op.has_assignee_id = cli_has(cli, "--assignee");
    op.assignee_id = cli_u64(cli, "--assignee");
    op.subject = mut(cli_str(cli, "--subject"));
    op.has_wake_at_ms = cli_has(cli, "--wake-at-ms");
    op.wake_at_ms = cli_u64(cli, "--wake-at-ms");
    char *tags_add[CLI_LIST_MAX], *tags_remove[CLI_LIST_MAX];
    op.n_tags_add = list_of(cli, "--tag-add", tags_add);
    op.tags_add = tags_add;
    op.n_tags_remove = list_of(cli, "--tag-remove", tags_remove);
    op.tags_remove = tags_remove;
    const struct cli_val *fields = cli_opt(cli, "--field");
    Ticketq__CustomField custom[CLI_LIST_MAX], *custom_ptrs[CLI_LIST_MAX];
    char keys[CLI_LIST_MAX][128];
    for (size_t i = 0; i < fields->list_count; i++) {
        if (cli_split_pair(fields->list[i], keys[i], sizeof(keys[i])) == NULL) {
            return cli_usage_error("--field wants KEY=VALUE (got \"%s\")", fields->list[i]);
        }
        parse_custom_field(fields->list[i], keys[i], sizeof(keys[i]), &custom[i]);
        custom_ptrs[i] = &custom[i];
    }
    op.n_custom_fields = fields->list_count;
    op.custom_fields = custom_ptrs;
    REQ(req, ticket_update, TICKET_UPDATE, &op);
    return cli_call_print(cli, &req);
}

static int run_ticket_claim(struct cli *cli) {
    Ticketq__Claim op = TICKETQ__CLAIM__INIT;
    op.has_agent_id = cli_has(cli, "--agent");
    op.agent_id = cli_u64(cli, "--agent");
    const struct cli_val *queues = cli_opt(cli, "--queue");
    uint64_t queue_ids[CLI_LIST_MAX];
    for (size_t i = 0; i < queues->list_count; i++) {
        if (!cli_parse_u64(queues->list[i], &queue_ids[i])) {
            return cli_usage_error("--queue must be a queue id (got \"%s\")", queues->list[i]);
        }
    }
    op.n_queue_ids = queues->list_count;
    op.queue_ids = queue_ids;
    REQ(req, claim, CLAIM, &op);
    return cli_call_print(cli, &req);
}

static int run_ticket_release(struct cli *cli) {
    Ticketq__Release op = TICKETQ__RELEASE__INIT;
    op.ticket_id = cli_u64(cli, "TICKET_ID");
    REQ(req, release, RELEASE, &op);
    return cli_call_print(cli, &req);
}

static int run_ticket_transfer(struct cli *cli) {
    Ticketq__Transfer op = TICKETQ__TRANSFER__INIT;
    op.ticket_id = cli_u64(cli, "TICKET_ID");
    op.has_to_queue_id = cli_has(cli, "--queue");
    op.to_queue_id = cli_u64(cli, "--queue");
    op.has_to_agent_id = cli_has(cli, "--agent");
    op.to_agent_id = cli_u64(cli, "--agent");
    if (!op.has_to_queue_id && !op.has_to_agent_id) {
        return cli_usage_error("'ticket transfer' needs --queue or --agent");
    }
    REQ(req, transfer, TRANSFER, &op);
    return cli_call_print(cli, &req);
}

static int run_ticket_merge(struct cli *cli) {
    Ticketq__TicketMerge op = TICKETQ__TICKET_MERGE__INIT;
    op.source_id = cli_u64(cli, "SOURCE_ID");
    op.target_id = cli_u64(cli, "TARGET_ID");
    REQ(req, ticket_merge, TICKET_MERGE, &op);
    return cli_call_print(cli, &req);
}

static int run_sla_nearest(struct cli *cli) {
    Ticketq__SlaNearest op = TICKETQ__SLA_NEAREST__INIT;
    if (!opt_u32(cli, "--limit", &op.has_limit, &op.limit)) return CLI_EXIT_USAGE;
    REQ(req, sla_nearest, SLA_NEAREST, &op);
    return cli_call_print(cli, &req);
}

static int run_outbox_take(struct cli *cli) {
    Ticketq__OutboxTake op = TICKETQ__OUTBOX_TAKE__INIT;
    op.channel = (Ticketq__Channel)cli_opt(cli, "--channel")->enum_value;
    if (!opt_u32(cli, "--max", &op.has_max, &op.max)) return CLI_EXIT_USAGE;
    op.has_lease_ms = cli_has(cli, "--lease");
    op.lease_ms = cli_u64(cli, "--lease");
    REQ(req, outbox_take, OUTBOX_TAKE, &op);
    return cli_call_print(cli, &req);
}

static int run_outbox_ack(struct cli *cli) {
    Ticketq__OutboxAck op = TICKETQ__OUTBOX_ACK__INIT;
    op.message_id = cli_u64(cli, "MESSAGE_ID");
    op.status = (Ticketq__Delivery)cli_opt(cli, "--status")->enum_value;
    op.reason = mut(cli_str(cli, "--reason"));
    op.provider_message_id = mut(cli_str(cli, "--provider-id"));
    op.has_retry = cli_has(cli, "--retry");
    op.retry = op.has_retry;
    REQ(req, outbox_ack, OUTBOX_ACK, &op);
    return cli_call_print(cli, &req);
}

/* ---- table ------------------------------------------------------------------------------- */

static const struct cli_opt ingest_opts[] = {
    {"--channel", OPT_ENUM, true, "channel the message came in on", &ticketq__channel__descriptor},
    {"--from", OPT_STR, true, "sender's identity on the channel (email, phone, ...)", NULL},
    {"--body", OPT_STR, false, "message text (UTF-8)", NULL},
    {"--body-file", OPT_STR, false, "read the text from a file (- = stdin)", NULL},
    {"--name", OPT_STR, false, "customer name for a first contact", NULL},
    {"--language", OPT_STR, false, "customer language", NULL},
    {"--external-id", OPT_STR, false, "provider message id (idempotency key)", NULL},
    {"--provider-ts-ms", OPT_U64, false, "provider timestamp (ms since the epoch)", NULL},
    {"--queue", OPT_U64, false, "queue for a new ticket (default: the channel's)", NULL},
    {"--priority", OPT_ENUM, false, "priority of a new ticket", &ticketq__priority__descriptor},
    {"--subject", OPT_STR, false, "subject of a new ticket", NULL},
    {"--tag", OPT_LIST, false, "tag of a new ticket", NULL},
    END,
};
static const struct cli_opt reply_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    {"--body", OPT_STR, false, "reply text", NULL},
    {"--body-file", OPT_STR, false, "read the text from a file (- = stdin)", NULL},
    {"--status", OPT_ENUM, false, "set this status with the reply", &ticketq__status__descriptor},
    {"--channel", OPT_ENUM, false, "reply channel (default: the ticket's)",
     &ticketq__channel__descriptor},
    {"--agent", OPT_U64, false, "agent to reply as (tenant admin tokens)", NULL},
    {"--automated", OPT_FLAG, false, "the author is automation", NULL},
    END,
};
static const struct cli_opt note_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    {"--body", OPT_STR, false, "note text (never sent to the customer)", NULL},
    {"--body-file", OPT_STR, false, "read the text from a file (- = stdin)", NULL},
    {"--agent", OPT_U64, false, "agent to write as (tenant admin tokens)", NULL},
    END,
};
static const struct cli_opt ticket_show_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    {"--offset", OPT_U64, false, "first message index", NULL},
    {"--limit", OPT_U64, false, "messages to show (default 20, max 200)", NULL},
    {"--last", OPT_FLAG, false, "the last --limit messages", NULL},
    END,
};
static const struct cli_opt ticket_update_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    {"--status", OPT_ENUM, false, "new status", &ticketq__status__descriptor},
    {"--priority", OPT_ENUM, false, "new priority", &ticketq__priority__descriptor},
    {"--queue", OPT_U64, false, "move to this queue", NULL},
    {"--assignee", OPT_U64, false, "assign to this agent (0 = unassign)", NULL},
    {"--tag-add", OPT_LIST, false, "add a tag", NULL},
    {"--tag-remove", OPT_LIST, false, "remove a tag", NULL},
    {"--subject", OPT_STR, false, "new subject", NULL},
    {"--field", OPT_LIST, false, "custom field KEY=VALUE (integer, true/false or text)", NULL},
    {"--wake-at-ms", OPT_U64, false, "wake an on-hold ticket at (ms since epoch; 0 = clear)", NULL},
    END,
};
static const struct cli_opt ticket_claim_opts[] = {
    {"--agent", OPT_U64, false, "agent to claim for (default: the token's agent)", NULL},
    {"--queue", OPT_LIST, false, "queue id to claim from (default: all)", NULL},
    END,
};
static const struct cli_opt ticket_id_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    END,
};
static const struct cli_opt ticket_transfer_opts[] = {
    {"TICKET_ID", OPT_U64, true, "the ticket", NULL},
    {"--queue", OPT_U64, false, "to this queue", NULL},
    {"--agent", OPT_U64, false, "to this agent", NULL},
    END,
};
static const struct cli_opt ticket_merge_opts[] = {
    {"SOURCE_ID", OPT_U64, true, "the ticket merged away", NULL},
    {"TARGET_ID", OPT_U64, true, "the ticket that remains", NULL},
    END,
};
static const struct cli_opt sla_nearest_opts[] = {
    {"--limit", OPT_U64, false, "how many (default 50, max 1000)", NULL},
    END,
};
static const struct cli_opt outbox_take_opts[] = {
    {"--channel", OPT_ENUM, true, "the gateway's channel", &ticketq__channel__descriptor},
    {"--max", OPT_U64, false, "messages to take (default 10, max 1000)", NULL},
    {"--lease", OPT_MS, false, "lease before redelivery (default 30s)", NULL},
    END,
};
static const struct cli_opt outbox_ack_opts[] = {
    {"MESSAGE_ID", OPT_U64, true, "the outbound message", NULL},
    {"--status", OPT_ENUM, true, "delivery status (sent, delivered, read, failed)",
     &ticketq__delivery__descriptor},
    {"--reason", OPT_STR, false, "failure reason", NULL},
    {"--provider-id", OPT_STR, false, "provider's message id", NULL},
    {"--retry", OPT_FLAG, false, "failed but retryable", NULL},
    END,
};

const struct cli_cmd cli_cmds_ticket[] = {
    {"ingest", "an inbound customer message (creates or continues a ticket)", ingest_opts,
     run_ingest},
    {"reply", "a public reply on a ticket", reply_opts, run_reply},
    {"note", "an internal note on a ticket", note_opts, run_note},
    {"ticket show", "a ticket with SLA clocks and a page of messages", ticket_show_opts,
     run_ticket_show},
    {"ticket update", "status, priority, queue, assignee, tags, subject, fields",
     ticket_update_opts, run_ticket_update},
    {"ticket claim", "take the next waiting ticket as an agent", ticket_claim_opts,
     run_ticket_claim},
    {"ticket release", "give a ticket back to its queue", ticket_id_opts, run_ticket_release},
    {"ticket transfer", "move a ticket to a queue and/or agent", ticket_transfer_opts,
     run_ticket_transfer},
    {"ticket merge", "merge one ticket into another", ticket_merge_opts, run_ticket_merge},
    {"sla nearest", "tickets nearest their SLA deadline", sla_nearest_opts, run_sla_nearest},
    {"outbox take", "lease outbound messages of a channel (gateways)", outbox_take_opts,
     run_outbox_take},
    {"outbox ack", "report the delivery status of an outbound message", outbox_ack_opts,
     run_outbox_ack},
    {NULL, NULL, NULL, NULL},
};
