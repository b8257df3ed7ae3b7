/* client/cli/json.c: the CLI's JSON writer (contract in json.h).
 *
 * Invariant: depth counts open containers; first[d] says whether the container at depth d has
 * had an element yet (so the next one needs a comma); inside an object a value may only
 * follow a key (key_pending). Output goes straight to a FILE: nothing is buffered here.
 */
#include "json.h"

#include "tq_assert.h"

#include <inttypes.h>
#include <string.h>

void json_init(struct json *j, FILE *out) {
    TQ_ASSERT(out != NULL);
    j->out = out;
    j->depth = 0;
    j->first[0] = true;
    j->is_object[0] = false;
    j->key_pending = false;
}

/* Called before every value: writes the separating comma, checks key/value alternation. */
static void before_value(struct json *j) {
    if (j->depth > 0 && j->is_object[j->depth]) {
        TQ_ASSERT(j->key_pending);
        j->key_pending = false;
        return;
    }
    if (!j->first[j->depth]) fputc(',', j->out);
    j->first[j->depth] = false;
}

static void open_container(struct json *j, bool object) {
    before_value(j);
    TQ_ASSERT(j->depth + 1 < JSON_DEPTH_MAX);
    j->depth++;
    j->first[j->depth] = true;
    j->is_object[j->depth] = object;
    fputc(object ? '{' : '[', j->out);
}

static void close_container(struct json *j, bool object) {
    TQ_ASSERT(j->depth > 0);
    TQ_ASSERT(j->is_object[j->depth] == object);
    TQ_ASSERT(!j->key_pending);
    j->depth--;
    fputc(object ? '}' : ']', j->out);
}

void json_object_begin(struct json *j) {
    open_container(j, true);
}
void json_object_end(struct json *j) {
    close_container(j, true);
}
void json_array_begin(struct json *j) {
    open_container(j, false);
}
void json_array_end(struct json *j) {
    close_container(j, false);
}

void json_key(struct json *j, const char *key) {
    TQ_ASSERT(j->depth > 0 && j->is_object[j->depth]);
    TQ_ASSERT(!j->key_pending);
    if (!j->first[j->depth]) fputc(',', j->out);
    j->first[j->depth] = false;
    json_write_escaped(j->out, key, strlen(key));
    fputc(':', j->out);
    j->key_pending = true;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static size_t utf8_sequence(const unsigned char *s, size_t left) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0u) != 0x80u) return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0; /* surrogates are not characters */
    return n;
}

void json_write_escaped(FILE *out, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            case '\b': fputs("\\b", out); break;
            case '\f': fputs("\\f", out); break;
            default: fprintf(out, "\\u%04x", c); break;
            }
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            size_t n = utf8_sequence(p + i, len - i);
            if (n == 0) {
                fputs("\\ufffd", out);
                i++;
            } else {
                fwrite(p + i, 1, n, out);
                i += n;
            }
        }
    }
    fputc('"', out);
}

void json_string_n(struct json *j, const char *s, size_t len) {
    before_value(j);
    json_write_escaped(j->out, s, len);
}

void json_string(struct json *j, const char *s) {
    if (s == NULL) {
        json_null(j);
        return;
    }
    json_string_n(j, s, strlen(s));
}

void json_u64(struct json *j, uint64_t v) {
    before_value(j);
    fprintf(j->out, "%" PRIu64, v);
}

void json_i64(struct json *j, int64_t v) {
    before_value(j);
    fprintf(j->out, "%" PRId64, v);
}

void json_bool(struct json *j, bool v) {
    before_value(j);
    fputs(v ? "true" : "false", j->out);
}

void json_null(struct json *j) {
    before_value(j);
    fputs("null", j->out);
}

void json_end_line(struct json *j) {
    TQ_ASSERT(j->depth == 0);
    fputc('\n', j->out);
    j->first[0] = true;
}
