/* server/state/names.c: stable names of the state machine's enums (wire, CLI, audit replay).
 *
 * The names are part of the protocol's text forms and of docs/tickets.md: never rename one.
 * Each table is indexed by the enum value; parsers are exact, case-sensitive matches.
 */
#include "state.h"
#include "tq_assert.h"

#include <string.h>

static const char *const channel_names[TQ_CHANNEL_COUNT] = {
    "email",     "sms",    "whatsapp", "wechat", "webchat", "messenger",
    "instagram", "amazon", "ebay",     "phone",  "api",
};
static const char *const status_names[TQ_STATUS_COUNT] = {
    "new", "open", "pending", "on_hold", "solved", "closed",
};
static const char *const priority_names[TQ_PRIORITY_COUNT] = {"low", "normal", "high", "urgent"};
static const char *const delivery_names[] = {"none",      "queued", "sent",
                                             "delivered", "read",   "failed"};
static const char *const presence_names[] = {"offline", "away", "online"};
static const char *const role_names[] = {"server_admin", "tenant_admin", "agent", "integration"};
static const char *const metric_names[TQ_SLA_METRIC_COUNT] = {
    "first_reply", "next_reply", "requester_wait", "agent_work", "reply_window",
};
static const char *const event_names[] = {
    "?",
    "tenant_created",
    "ticket_created",
    "ticket_updated",
    "message_added",
    "assigned",
    "sla_warning",
    "sla_breach",
    "sla_achieved",
    "delivery_status",
    "customer_created",
    "customer_merged",
    "ticket_merged",
    "outbox_failed",
    "config_changed",
    "customer_erased",
};

static const char *name_of(const char *const *names, size_t count, unsigned v) {
    return v < count ? names[v] : "unknown";
}

static bool parse_in(const char *const *names, size_t count, const char *name, unsigned *out) {
    if (name == NULL) return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], name) == 0) {
            *out = (unsigned)i;
            return true;
        }
    }
    return false;
}

const char *tq_channel_name(enum tq_channel c) {
    return name_of(channel_names, TQ_ARRAY_COUNT(channel_names), (unsigned)c);
}

bool tq_channel_parse(const char *name, enum tq_channel *out) {
    unsigned v;
    if (!parse_in(channel_names, TQ_ARRAY_COUNT(channel_names), name, &v)) return false;
    *out = (enum tq_channel)v;
    return true;
}

enum tq_channel_class tq_channel_class_of(enum tq_channel c) {
    switch (c) {
    case TQ_CHANNEL_EMAIL:
    case TQ_CHANNEL_AMAZON:
    case TQ_CHANNEL_EBAY:
    case TQ_CHANNEL_API: return TQ_CHANNEL_CLASS_ASYNC;
    case TQ_CHANNEL_SMS:
    case TQ_CHANNEL_WHATSAPP:
    case TQ_CHANNEL_WECHAT:
    case TQ_CHANNEL_WEBCHAT:
    case TQ_CHANNEL_MESSENGER:
    case TQ_CHANNEL_INSTAGRAM:
    case TQ_CHANNEL_PHONE: return TQ_CHANNEL_CLASS_LIVE;
    }
    return TQ_CHANNEL_CLASS_ASYNC;
}

const char *tq_status_name(enum tq_ticket_status s) {
    return name_of(status_names, TQ_ARRAY_COUNT(status_names), (unsigned)s);
}

bool tq_status_parse(const char *name, enum tq_ticket_status *out) {
    unsigned v;
    if (!parse_in(status_names, TQ_ARRAY_COUNT(status_names), name, &v)) return false;
    *out = (enum tq_ticket_status)v;
    return true;
}

const char *tq_priority_name(enum tq_priority p) {
    return name_of(priority_names, TQ_ARRAY_COUNT(priority_names), (unsigned)p);
}

bool tq_priority_parse(const char *name, enum tq_priority *out) {
    unsigned v;
    if (!parse_in(priority_names, TQ_ARRAY_COUNT(priority_names), name, &v)) return false;
    *out = (enum tq_priority)v;
    return true;
}

const char *tq_delivery_name(enum tq_delivery d) {
    return name_of(delivery_names, TQ_ARRAY_COUNT(delivery_names), (unsigned)d);
}

const char *tq_presence_name(enum tq_presence p) {
    return name_of(presence_names, TQ_ARRAY_COUNT(presence_names), (unsigned)p);
}

const char *tq_role_name(enum tq_role r) {
    return name_of(role_names, TQ_ARRAY_COUNT(role_names), (unsigned)r);
}

const char *tq_sla_metric_name(enum tq_sla_metric m) {
    return name_of(metric_names, TQ_ARRAY_COUNT(metric_names), (unsigned)m);
}

const char *tq_event_type_name(enum tq_event_type t) {
    return name_of(event_names, TQ_ARRAY_COUNT(event_names), (unsigned)t);
}
