/* client/cli/render.c: prints protocol messages as JSON or as human-readable text.
 *
 * One generic walker over protobuf-c descriptors serves every subcommand, so the output of a
 * field added to ticketq.proto appears in both modes without touching the CLI. Conventions:
 *   - field names are the proto names (snake_case); enums print as their lower-case names
 *     (tq_client_enum_name), never as numbers;
 *   - absent optional fields are left out; repeated fields print as arrays;
 *   - arrays indexed by an enum (StatsResult.tickets_by_status, messages_by_channel) print as
 *     objects keyed by the enum's names, which is what a script wants to read;
 *   - in text mode, fields that hold a point in time (TIMESTAMP_FIELDS) print as ISO-8601 UTC;
 *     durations (*_ms that are not timestamps) stay numbers of milliseconds.
 */
#include "cli.h"

#include "tq_assert.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

static const char *const TIMESTAMP_FIELDS[] = {
    "created_ms",  "updated_ms", "first_response_ms",  "solved_ms", "wake_at_ms", "provider_ts_ms",
    "deadline_ms", "at_ms",      "oldest_enqueued_ms",
};

static bool is_timestamp(const char *name) {
    for (size_t i = 0; i < TQ_ARRAY_COUNT(TIMESTAMP_FIELDS); i++) {
        if (strcmp(name, TIMESTAMP_FIELDS[i]) == 0) return true;
    }
    return false;
}

/* Repeated counters whose index is an enum value. */
static const ProtobufCEnumDescriptor *indexed_by(const char *name) {
    if (strcmp(name, "tickets_by_status") == 0) return &ticketq__status__descriptor;
    if (strcmp(name, "messages_by_channel") == 0) return &ticketq__channel__descriptor;
    return NULL;
}

const char *cli_iso8601(uint64_t ms, char *buf, size_t cap) {
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, cap, "%" PRIu64, ms);
        return buf;
    }
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03uZ", date, (unsigned)(ms % 1000));
    return buf;
}

/* ---- field access ------------------------------------------------------------------------ */

static const void *field_ptr(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
    return (const char *)msg + f->offset;
}

/* Number of values of f in msg: 0/1 for singular fields, the count for repeated ones. */
static size_t field_count(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
    const char *base = (const char *)msg;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n;
        memcpy(&n, base + f->quantifier_offset, sizeof(n));
        return n;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which;
        memcpy(&which, base + f->quantifier_offset, sizeof(which));
        return which == f->id;
    }
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const void *p;
        memcpy(&p, base + f->offset, sizeof(p));
        return p != NULL;
    }
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
    protobuf_c_boolean has;
    memcpy(&has, base + f->quantifier_offset, sizeof(has));
    return has != 0;
}

static size_t type_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 8;
}

/* The address of value index of f (the field itself for singular fields). */
static const void *value_at(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                            size_t index) {
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return field_ptr(msg, f);
    const char *array;
    memcpy(&array, field_ptr(msg, f), sizeof(array));
    return array + index * type_size(f->type);
}

/* Scalar kinds reduced to what printing needs. */
struct scalar {
    enum { S_U64, S_I64, S_DOUBLE, S_BOOL, S_ENUM, S_STRING, S_BYTES, S_MESSAGE } kind;
    uint64_t u;
    int64_t i;
    double d;
    const char *s;
    size_t len;
    const ProtobufCMessage *m;
};

static struct scalar load(const ProtobufCFieldDescriptor *f, const void *p) {
    struct scalar v;
    memset(&v, 0, sizeof(v));
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: {
        int32_t x;
        memcpy(&x, p, sizeof(x));
        v.kind = S_I64;
        v.i = x;
        break;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t x;
        memcpy(&x, p, sizeof(x));
        v.kind = S_U64;
        v.u = x;
        break;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        v.kind = S_I64;
        memcpy(&v.i, p, sizeof(v.i));
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        v.kind = S_U64;
        memcpy(&v.u, p, sizeof(v.u));
        break;
    case PROTOBUF_C_TYPE_FLOAT: {
        float x;
        memcpy(&x, p, sizeof(x));
        v.kind = S_DOUBLE;
        v.d = x;
        break;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
        v.kind = S_DOUBLE;
        memcpy(&v.d, p, sizeof(v.d));
        break;
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean b;
        memcpy(&b, p, sizeof(b));
        v.kind = S_BOOL;
        v.u = b != 0;
        break;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int x;
        memcpy(&x, p, sizeof(x));
        v.kind = S_ENUM;
        v.i = x;
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        v.kind = S_STRING;
        memcpy(&v.s, p, sizeof(v.s));
        v.len = v.s != NULL ? strlen(v.s) : 0;
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData b;
        memcpy(&b, p, sizeof(b));
        v.kind = S_BYTES;
        v.s = (const char *)b.data;
        v.len = b.len;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        v.kind = S_MESSAGE;
        memcpy(&v.m, p, sizeof(v.m));
        break;
    }
    return v;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_scalar(struct json *j, const ProtobufCFieldDescriptor *f, struct scalar v) {
    char buf[64];
    switch (v.kind) {
    case S_U64: json_u64(j, v.u); break;
    case S_I64: json_i64(j, v.i); break;
    case S_DOUBLE:
        snprintf(buf, sizeof(buf), "%.17g", v.d);
        json_string(j, buf); /* NaN/inf are not JSON numbers; none are in the protocol */
        break;
    case S_BOOL: json_bool(j, v.u != 0); break;
    case S_ENUM:
        json_string(j, tq_client_enum_name(f->descriptor, (int)v.i, buf, sizeof(buf)));
        break;
    case S_STRING:
    case S_BYTES:
        if (v.s == NULL) {
            json_null(j);
        } else {
            json_string_n(j, v.s, v.len);
        }
        break;
    case S_MESSAGE: cli_json_message(j, v.m); break;
    }
}

/* Writes the fields of msg as keys of the currently open object. */
static void json_fields(struct json *j, const ProtobufCMessage *msg) {
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned k = 0; k < desc->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[k];
        size_t n = field_count(msg, f);
        if (n == 0 && f->label != PROTOBUF_C_LABEL_REPEATED) continue;
        json_key(j, f->name);
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            json_scalar(j, f, load(f, value_at(msg, f, 0)));
            continue;
        }
        const ProtobufCEnumDescriptor *index_enum = indexed_by(f->name);
        if (index_enum != NULL) {
            json_object_begin(j);
            char buf[64];
            for (size_t i = 0; i < n; i++) {
                json_key(j, tq_client_enum_name(index_enum, (int)i, buf, sizeof(buf)));
                json_scalar(j, f, load(f, value_at(msg, f, i)));
            }
            json_object_end(j);
            continue;
        }
        json_array_begin(j);
        for (size_t i = 0; i < n; i++)
            json_scalar(j, f, load(f, value_at(msg, f, i)));
        json_array_end(j);
    }
}

void cli_json_message(struct json *j, const ProtobufCMessage *msg) {
    TQ_ASSERT(msg != NULL);
    json_object_begin(j);
    json_fields(j, msg);
    json_object_end(j);
}

/* ---- text -------------------------------------------------------------------------------- */

static void text_scalar(FILE *out, const ProtobufCFieldDescriptor *f, struct scalar v) {
    char buf[64];
    switch (v.kind) {
    case S_U64:
        if (is_timestamp(f->name) && v.u != 0) {
            fputs(cli_iso8601(v.u, buf, sizeof(buf)), out);
        } else {
            fprintf(out, "%" PRIu64, v.u);
        }
        break;
    case S_I64: fprintf(out, "%" PRId64, v.i); break;
    case S_DOUBLE: fprintf(out, "%g", v.d); break;
    case S_BOOL: fputs(v.u ? "yes" : "no", out); break;
    case S_ENUM: fputs(tq_client_enum_name(f->descriptor, (int)v.i, buf, sizeof(buf)), out); break;
    case S_STRING:
    case S_BYTES:
        if (v.s != NULL) fwrite(v.s, 1, v.len, out);
        break;
    case S_MESSAGE: fputs("{...}", out); break;
    }
}

static void indent_to(FILE *out, int indent) {
    for (int i = 0; i < indent; i++)
        fputc(' ', out);
}

void cli_text_message(FILE *out, const ProtobufCMessage *msg, int indent) {
    TQ_ASSERT(msg != NULL);
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned k = 0; k < desc->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[k];
        size_t n = field_count(msg, f);
        if (n == 0) continue;
        indent_to(out, indent);
        fprintf(out, "%s:", f->name);
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCEnumDescriptor *index_enum = indexed_by(f->name);
            char buf[64];
            for (size_t i = 0; i < n; i++) {
                fputs(i == 0 ? " " : ", ", out);
                if (index_enum != NULL) {
                    fprintf(out, "%s=", tq_client_enum_name(index_enum, (int)i, buf, sizeof(buf)));
                }
                text_scalar(out, f, load(f, value_at(msg, f, i)));
            }
            fputc('\n', out);
            continue;
        }
        fputc('\n', out);
        for (size_t i = 0; i < n; i++) {
            const ProtobufCMessage *sub = load(f, value_at(msg, f, i)).m;
            if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                indent_to(out, indent + 2);
                fprintf(out, "- #%zu\n", i + 1);
                cli_text_message(out, sub, indent + 4);
            } else {
                cli_text_message(out, sub, indent + 2);
            }
        }
    }
}

/* The result message of a response (the oneof), or NULL when it has none. */
static const ProtobufCMessage *result_of(const Ticketq__Response *resp) {
    const ProtobufCMessageDescriptor *desc = resp->base.descriptor;
    for (unsigned k = 0; k < desc->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[k];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && field_count(&resp->base, f) == 1) {
            return load(f, field_ptr(&resp->base, f)).m;
        }
    }
    return NULL;
}

void cli_print_response(const struct cli *cli, const Ticketq__Response *resp) {
    const ProtobufCMessage *result = result_of(resp);
    bool mutation = result == NULL || resp->result_case == TICKETQ__RESPONSE__RESULT_IDS;
    if (cli->json) {
        /* Two shapes: a mutation is {"ok":true,"lsn":N, <ids...>}; a read is its result. */
        struct json j;
        json_init(&j, stdout);
        if (mutation) {
            json_object_begin(&j);
            json_key(&j, "ok");
            json_bool(&j, true);
            if (resp->has_lsn) {
                json_key(&j, "lsn");
                json_u64(&j, resp->lsn);
            }
            if (result != NULL) json_fields(&j, result);
            json_object_end(&j);
        } else {
            cli_json_message(&j, result);
        }
        json_end_line(&j);
        return;
    }
    if (result != NULL) cli_text_message(stdout, result, 0);
    if (mutation && resp->has_lsn) printf("lsn: %" PRIu64 "\n", resp->lsn);
    if (result == NULL && !resp->has_lsn) printf("ok\n");
}

void cli_print_event(const struct cli *cli, const Ticketq__Event *ev) {
    if (cli->json) {
        struct json j;
        json_init(&j, stdout);
        cli_json_message(&j, &ev->base);
        json_end_line(&j);
        fflush(stdout);
        return;
    }
    char buf[64];
    char when[40] = "-";
    if (ev->has_at_ms) cli_iso8601(ev->at_ms, when, sizeof(when));
    printf("%s lsn=%" PRIu64 " %s", when, ev->lsn,
           tq_client_enum_name(&ticketq__event_type__descriptor, ev->type, buf, sizeof(buf)));
    /* old/new values of a status, priority or delivery change print as names */
    const ProtobufCEnumDescriptor *values = NULL;
    if (ev->has_field && ev->field == TICKETQ__EVENT_FIELD__FIELD_STATUS) {
        values = &ticketq__status__descriptor;
    } else if (ev->has_field && ev->field == TICKETQ__EVENT_FIELD__FIELD_PRIORITY) {
        values = &ticketq__priority__descriptor;
    } else if (ev->type == TICKETQ__EVENT_TYPE__DELIVERY_STATUS) {
        values = &ticketq__delivery__descriptor;
    }
    const ProtobufCMessageDescriptor *desc = ev->base.descriptor;
    for (unsigned k = 0; k < desc->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[k];
        if (strcmp(f->name, "type") == 0 || strcmp(f->name, "lsn") == 0 ||
            strcmp(f->name, "at_ms") == 0 || field_count(&ev->base, f) == 0) {
            continue;
        }
        printf(" %s=", f->name);
        struct scalar v = load(f, field_ptr(&ev->base, f));
        bool is_value = strcmp(f->name, "old_value") == 0 || strcmp(f->name, "new_value") == 0;
        if (values != NULL && is_value && v.i >= 0 && v.i <= INT32_MAX) {
            fputs(tq_client_enum_name(values, (int)v.i, buf, sizeof(buf)), stdout);
        } else {
            text_scalar(stdout, f, v);
        }
    }
    putchar('\n');
    fflush(stdout);
}
