/* client/cli/args.c: the CLI's one option parser (declarations in cli.h).
 *
 * Owns the rules every subcommand shares: global options (--addr, --token, --token-file,
 * --tenant, --json, --timeout-ms) are accepted before or after the subcommand words; each
 * subcommand option is declared once with its kind, so values are checked before anything is
 * sent; usage errors are one line on stderr and exit 2. "--name=value" and "--name value" are
 * both accepted; "--" ends options. Values point into argv (never copied).
 */
#include "cli.h"

#include "tq_assert.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ticketq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

bool cli_parse_u64(const char *text, uint64_t *out) {
    if (text == NULL || !isdigit((unsigned char)text[0])) return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') return false;
    *out = v;
    return true;
}

bool cli_parse_ms(const char *text, uint64_t *ms_out) {
    if (text == NULL || !isdigit((unsigned char)text[0])) return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0) return false;
    uint64_t unit;
    if (*end == '\0' || strcmp(end, "ms") == 0) {
        unit = 1;
    } else if (strcmp(end, "s") == 0) {
        unit = 1000;
    } else if (strcmp(end, "m") == 0) {
        unit = 60000;
    } else if (strcmp(end, "h") == 0) {
        unit = 3600000;
    } else if (strcmp(end, "d") == 0) {
        unit = 86400000;
    } else {
        return false;
    }
    if (v > UINT64_MAX / unit) return false;
    *ms_out = v * unit;
    return true;
}

bool cli_parse_enum(const ProtobufCEnumDescriptor *desc, const char *what, const char *text,
                    int *value_out) {
    if (tq_client_enum_parse(desc, text, value_out)) return true;
    fprintf(stderr, "ticketq: %s must be one of", what);
    char buf[64];
    bool first = true;
    for (unsigned i = 0; i < desc->n_values; i++) {
        if (strcmp(desc->values[i].name, "EVENT_UNKNOWN") == 0) continue;
        fprintf(stderr, "%s %s", first ? "" : ",",
                tq_client_enum_name(desc, desc->values[i].value, buf, sizeof(buf)));
        first = false;
    }
    fprintf(stderr, " (got \"%s\")\n", text);
    return false;
}

static const char *opt_metavar(const struct cli_opt *o) {
    switch (o->kind) {
    case OPT_STR: return " TEXT";
    case OPT_U64: return " N";
    case OPT_MS: return " DURATION";
    case OPT_FLAG: return "";
    case OPT_BOOL: return " true|false";
    case OPT_ENUM: return " NAME";
    case OPT_LIST: return " VALUE";
    }
    return "";
}

void cli_usage(const struct cli_cmd *cmd, FILE *out) {
    fprintf(out, "usage: ticketq %s", cmd->words);
    for (const struct cli_opt *o = cmd->opts; o != NULL && o->name != NULL; o++) {
        if (o->name[0] != '-') fprintf(out, o->required ? " %s" : " [%s]", o->name);
    }
    fprintf(out, " [options]\n\n%s\n\noptions:\n", cmd->summary);
    char buf[64];
    for (const struct cli_opt *o = cmd->opts; o != NULL && o->name != NULL; o++) {
        char left[64];
        snprintf(left, sizeof(left), "%s%s", o->name, o->name[0] == '-' ? opt_metavar(o) : "");
        fprintf(out, "  %-28s %s%s%s", left, o->help, o->required ? " (required)" : "",
                o->kind == OPT_LIST ? " (repeatable)" : "");
        if (o->enum_desc != NULL) {
            fputs(" [", out);
            for (unsigned i = 0; i < o->enum_desc->n_values; i++) {
                fprintf(out, "%s%s", i == 0 ? "" : " ",
                        tq_client_enum_name(o->enum_desc, o->enum_desc->values[i].value, buf,
                                            sizeof(buf)));
            }
            fputs("]", out);
        }
        fputc('\n', out);
    }
    fputs("\nglobal options: --addr HOST:PORT|unix:PATH, --token T, --token-file F, "
          "--tenant ID,\n  --json, --timeout-ms N (env TICKETQ_ADDR, TICKETQ_TOKEN)\n",
          out);
}

/* Reads the first line of path into cli->token_buf. */
static int read_token_file(struct cli *cli, const char *path) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return cli_usage_error("--token-file %s: %s", path, strerror(errno));
    size_t n = fread(cli->token_buf, 1, sizeof(cli->token_buf) - 1, fp);
    fclose(fp);
    cli->token_buf[n] = '\0';
    char *nl = strpbrk(cli->token_buf, "\r\n");
    if (nl != NULL) *nl = '\0';
    n = strlen(cli->token_buf);
    while (n > 0 && isspace((unsigned char)cli->token_buf[n - 1]))
        cli->token_buf[--n] = '\0';
    if (n == 0 || n > TQ_CLIENT_TOKEN_BYTES_MAX) {
        return cli_usage_error("--token-file %s: no token of 1..%d bytes on its first line", path,
                               TQ_CLIENT_TOKEN_BYTES_MAX);
    }
    cli->token = cli->token_buf;
    return -1;
}

/* If argv[*i] is a global option, consumes it (and its value). Returns 1 if consumed, 0 if
 * not a global option, or -(exit code) - 1 on error. */
static int parse_global(struct cli *cli, int argc, char **argv, int *i) {
    const char *arg = argv[*i];
    static const char *const with_value[] = {"--addr", "--token", "--token-file", "--tenant",
                                             "--timeout-ms"};
    if (strcmp(arg, "--json") == 0) {
        cli->json = true;
        return 1;
    }
    for (size_t k = 0; k < TQ_ARRAY_COUNT(with_value); k++) {
        size_t n = strlen(with_value[k]);
        const char *value;
        if (strncmp(arg, with_value[k], n) != 0) continue;
        if (arg[n] == '=') {
            value = arg + n + 1;
        } else if (arg[n] == '\0') {
            if (*i + 1 >= argc) return -cli_usage_error("%s needs a value", with_value[k]) - 1;
            value = argv[++*i];
        } else {
            continue;
        }
        uint64_t v = 0;
        switch (k) {
        case 0: cli->addr = value; break;
        case 1: cli->token = value; break;
        case 2: {
            int rc = read_token_file(cli, value);
            if (rc >= 0) return -rc - 1;
            break;
        }
        case 3:
            if (!cli_parse_u64(value, &v)) {
                return -cli_usage_error("--tenant must be a tenant id (got \"%s\")", value) - 1;
            }
            cli->tenant_id = v;
            break;
        default:
            if (!cli_parse_u64(value, &v) || v > 86400000) {
                return -cli_usage_error("--timeout-ms must be 0..86400000 (got \"%s\")", value) - 1;
            }
            cli->timeout_ms = v == 0 ? -1 : (int)v;
            break;
        }
        return 1;
    }
    return 0;
}

int cli_parse_globals(struct cli *cli, int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        if (argv[i][0] != '-') break;
        int rc = parse_global(cli, argc, argv, &i);
        if (rc < 0) return rc;
        if (rc == 0) {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return -1;
            return -cli_usage_error("unknown option %s", argv[i]) - 1;
        }
    }
    return i;
}

/* Checks and stores one value of option o. Returns -1 to go on, or an exit code. */
static int store_value(const struct cli_opt *o, struct cli_val *v, const char *text) {
    char what[64];
    snprintf(what, sizeof(what), "%s", o->name);
    switch (o->kind) {
    case OPT_STR: break;
    case OPT_FLAG: break;
    case OPT_U64:
        if (!cli_parse_u64(text, &v->u64)) {
            return cli_usage_error("%s must be a non-negative integer (got \"%s\")", o->name, text);
        }
        break;
    case OPT_MS:
        if (!cli_parse_ms(text, &v->u64)) {
            return cli_usage_error("%s must be a duration like 500, 30s, 15m, 4h, 2d (got \"%s\")",
                                   o->name, text);
        }
        break;
    case OPT_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) {
            v->u64 = 1;
        } else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) {
            v->u64 = 0;
        } else {
            return cli_usage_error("%s must be true or false (got \"%s\")", o->name, text);
        }
        break;
    case OPT_ENUM: {
        const char *bare = what[0] == '-' ? what + 2 : what;
        if (!cli_parse_enum(o->enum_desc, bare, text, &v->enum_value)) return CLI_EXIT_USAGE;
        break;
    }
    case OPT_LIST:
        if (o->enum_desc != NULL) {
            int dummy;
            const char *bare = what[0] == '-' ? what + 2 : what;
            if (!cli_parse_enum(o->enum_desc, bare, text, &dummy)) return CLI_EXIT_USAGE;
        }
        if (v->list_count >= CLI_LIST_MAX) {
            return cli_usage_error("%s given more than %d times", o->name, CLI_LIST_MAX);
        }
        v->list[v->list_count++] = text;
        break;
    }
    v->set = true;
    v->str = text;
    return -1;
}

int cli_parse(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv) {
    memset(cli->vals, 0, sizeof(cli->vals));
    cli->cmd = cmd;
    size_t opt_count = 0;
    while (cmd->opts != NULL && cmd->opts[opt_count].name != NULL)
        opt_count++;
    TQ_ASSERT(opt_count <= CLI_OPTS_MAX);
    size_t positional_next = 0;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0' && !isdigit((unsigned char)arg[1])) {
            if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                cli_usage(cmd, stdout);
                return CLI_EXIT_OK;
            }
            int g = parse_global(cli, argc, argv, &i);
            if (g < 0) return -g - 1;
            if (g == 1) continue;
            const char *eq = strchr(arg, '=');
            size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
            size_t k = 0;
            for (; k < opt_count; k++) {
                const char *name = cmd->opts[k].name;
                if (name[0] == '-' && strlen(name) == name_len && strncmp(name, arg, name_len) == 0)
                    break;
            }
            if (k == opt_count) {
                return cli_usage_error("unknown option %.*s for '%s'", (int)name_len, arg,
                                       cmd->words);
            }
            const struct cli_opt *o = &cmd->opts[k];
            const char *value = "";
            if (o->kind == OPT_FLAG) {
                if (eq != NULL) return cli_usage_error("%s takes no value", o->name);
            } else if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                return cli_usage_error("%s needs a value", o->name);
            }
            if (o->kind != OPT_LIST && cli->vals[k].set) {
                return cli_usage_error("%s given twice", o->name);
            }
            int rc = store_value(o, &cli->vals[k], value);
            if (rc >= 0) return rc;
            continue;
        }
        /* a positional argument: the next declared one */
        size_t seen = 0, k = 0;
        for (; k < opt_count; k++) {
            if (cmd->opts[k].name[0] == '-') continue;
            if (seen++ == positional_next) break;
        }
        if (k == opt_count) return cli_usage_error("unexpected argument \"%s\"", arg);
        positional_next++;
        int rc = store_value(&cmd->opts[k], &cli->vals[k], arg);
        if (rc >= 0) return rc;
    }
    for (size_t k = 0; k < opt_count; k++) {
        if (cmd->opts[k].required && !cli->vals[k].set) {
            return cli_usage_error("'%s' needs %s", cmd->words, cmd->opts[k].name);
        }
    }
    return -1;
}

const struct cli_val *cli_opt(const struct cli *cli, const char *name) {
    TQ_ASSERT(cli->cmd != NULL);
    for (size_t k = 0; cli->cmd->opts != NULL && cli->cmd->opts[k].name != NULL; k++) {
        if (strcmp(cli->cmd->opts[k].name, name) == 0) return &cli->vals[k];
    }
    TQ_ASSERT(!"option not declared by this subcommand");
    return NULL;
}

bool cli_has(const struct cli *cli, const char *name) {
    return cli_opt(cli, name)->set;
}

const char *cli_str(const struct cli *cli, const char *name) {
    const struct cli_val *v = cli_opt(cli, name);
    return v->set ? v->str : NULL;
}

uint64_t cli_u64(const struct cli *cli, const char *name) {
    const struct cli_val *v = cli_opt(cli, name);
    return v->set ? v->u64 : 0;
}

const char *cli_split_pair(const char *text, char *key, size_t cap) {
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text || (size_t)(eq - text) >= cap) return NULL;
    memcpy(key, text, (size_t)(eq - text));
    key[eq - text] = '\0';
    return eq + 1;
}
