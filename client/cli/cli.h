/* client/cli/cli.h: shared machinery of the `ticketq` command-line tool.
 *
 * Every subcommand is one entry of the dispatch table in main.c (struct cli_cmd): its words
 * ("ticket claim"), a one-line summary, a declarative option list (struct cli_opt) and a run
 * function. The generic parser (args.c) handles the global options anywhere on the line,
 * --help, positional arguments, types and enum names, so every subcommand reports usage
 * errors the same way: one line on stderr, exit 2. Server errors print
 * "error: <code>: <message>" and exit 1. Later subcommands (replay, verify, compact, backup,
 * restore) go in their own cmd_*.c file plus one line in the table.
 */
#ifndef TQ_CLI_H
#define TQ_CLI_H

#include "json.h"
#include "ticketq.h"

#include <stdbool.h>
#include <stdint.h>

#define CLI_EXIT_OK    0
#define CLI_EXIT_ERROR 1 /* the server (or the connection) said no */
#define CLI_EXIT_USAGE 2 /* the command line is wrong */
#define CLI_OPTS_MAX   24
#define CLI_LIST_MAX   64 /* values of one repeatable option */

enum cli_opt_kind {
    OPT_STR,  /* --x VALUE */
    OPT_U64,  /* --x N (non-negative integer) */
    OPT_MS,   /* --x DURATION: N (ms) or N with suffix ms, s, m, h, d */
    OPT_FLAG, /* --x (no value) */
    OPT_BOOL, /* --x true|false */
    OPT_ENUM, /* --x NAME of enum_desc */
    OPT_LIST, /* --x VALUE, repeatable */
};

struct cli_opt {
    const char *name; /* "--channel", or "ID" for a positional */
    enum cli_opt_kind kind;
    bool required;
    const char *help;
    const ProtobufCEnumDescriptor *enum_desc; /* OPT_ENUM (and OPT_LIST of enum names) */
};

struct cli_val {
    bool set;
    const char *str;                /* OPT_STR, raw text of every kind */
    uint64_t u64;                   /* OPT_U64, OPT_MS, OPT_BOOL (0/1) */
    int enum_value;                 /* OPT_ENUM */
    const char *list[CLI_LIST_MAX]; /* OPT_LIST */
    size_t list_count;
};

/* Global options and the connection, shared by every subcommand. */
struct cli {
    const char *addr;
    const char *token;
    char token_buf[TQ_CLIENT_TOKEN_BYTES_MAX + 2];
    uint64_t tenant_id;
    int timeout_ms;
    bool json;
    struct tq_client *client;
    struct cli_val vals[CLI_OPTS_MAX]; /* parsed options of the running subcommand */
    const struct cli_cmd *cmd;
};

/* `ticketq compact` without --data: online compaction through the server (cmd_compact.c).
 * argv[0] is "compact". Returns the exit code. */
int cli_compact_online(struct cli *cli, int argc, char **argv);

struct cli_cmd {
    const char *words; /* "ticket claim" */
    const char *summary;
    const struct cli_opt *opts; /* terminated by {NULL} */
    int (*run)(struct cli *cli);
};

/* Declares Request var with its oneof op set to value. */
#define REQ(var, field, CASE, value)                                                               \
    Ticketq__Request var = TICKETQ__REQUEST__INIT;                                                 \
    var.op_case = TICKETQ__REQUEST__OP_##CASE;                                                     \
    var.field = (value)

/* The generated structs hold char * for strings they never write (argv is writable anyway). */
static inline char *mut(const char *s) {
    union {
        const char *c;
        char *m;
    } u = {.c = s};
    return u.m;
}

/* ---- args.c ------------------------------------------------------------------------------ */

/* Parses argv (after the subcommand words) for cmd into cli->vals (same index as cmd->opts)
 * and the global options into cli. Returns -1 to go on, or an exit code (0 after --help). */
int cli_parse(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv);
/* Parses the global options that precede the subcommand; returns the index of the first
 * non-option word, or -(exit code) - 1 on a usage error / --help. */
int cli_parse_globals(struct cli *cli, int argc, char **argv);
void cli_usage(const struct cli_cmd *cmd, FILE *out);
/* Prints "ticketq: <msg>" to stderr and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) TQ_PRINTF(1, 2);

/* The value of option name of the running subcommand (it must be declared). */
const struct cli_val *cli_opt(const struct cli *cli, const char *name);
bool cli_has(const struct cli *cli, const char *name);
const char *cli_str(const struct cli *cli, const char *name); /* NULL if unset */
uint64_t cli_u64(const struct cli *cli, const char *name);    /* 0 if unset */

/* Splits "name=value": copies name into key (cap bytes) and returns value, or NULL. */
const char *cli_split_pair(const char *text, char *key, size_t cap);
/* Duration "90", "90ms", "30s", "15m", "4h", "2d" -> ms. False if malformed. */
bool cli_parse_ms(const char *text, uint64_t *ms_out);
bool cli_parse_u64(const char *text, uint64_t *out);
/* Parses an enum name, or prints "<what> must be one of a, b, c" and returns false. */
bool cli_parse_enum(const ProtobufCEnumDescriptor *desc, const char *what, const char *text,
                    int *value_out);

/* ---- main.c ------------------------------------------------------------------------------ */

/* Connects with the global options (once). Returns CLI_EXIT_OK or prints the error. */
int cli_connect(struct cli *cli);
/* Connects a second client with the same options (watch needs two connections). */
int cli_connect_extra(struct cli *cli, struct tq_client **client_out);
/* Prints "error: <code>: <message>" for a failed call and returns CLI_EXIT_ERROR. */
int cli_fail(const struct tq_error *err);

/* ---- render.c ---------------------------------------------------------------------------- */

/* Prints a successful response. JSON: a mutation prints {"ok":true,"lsn":N,<ids fields>}, a
 * read prints its result message as an object. Text: "key: value" lines, times as ISO-8601
 * UTC; an empty result prints ok. */
void cli_print_response(const struct cli *cli, const Ticketq__Response *resp);
/* Prints any message as one JSON value (no newline) with the writer. */
void cli_json_message(struct json *j, const ProtobufCMessage *msg);
/* Prints msg as indented "key: value" lines. */
void cli_text_message(FILE *out, const ProtobufCMessage *msg, int indent);
/* Formats ms since the epoch as "2026-11-23T17:56:18.123Z" into buf (>= 32 bytes). */
const char *cli_iso8601(uint64_t ms, char *buf, size_t cap);
/* One event as a line of text or one JSON object per line. */
void cli_print_event(const struct cli *cli, const Ticketq__Event *ev);

/* ---- subcommands (cmd_*.c) --------------------------------------------------------------- */

extern const struct cli_cmd cli_cmds_admin[];    /* ping, stats, tenant, token */
extern const struct cli_cmd cli_cmds_entities[]; /* queue, agent, customer */
extern const struct cli_cmd cli_cmds_ticket[];   /* ingest, reply, note, ticket, sla, outbox */
extern const struct cli_cmd cli_cmds_stream[];   /* subscribe, consumer ack, watch */

/* Sends req with the connected client and prints the response. The usual body of a simple
 * subcommand. */
int cli_call_print(struct cli *cli, Ticketq__Request *req);

#endif
