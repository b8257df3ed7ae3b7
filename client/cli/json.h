/* client/cli/json.h: a tiny streaming JSON writer for the CLI's --json output.
 *
 * The writer tracks nesting (up to JSON_DEPTH_MAX levels) and inserts commas itself, so
 * callers write values in order: json_object_begin, json_key + value, ..., json_object_end.
 * Strings are escaped per RFC 8259 (quote, backslash, control characters as \uXXXX); bytes
 * that are not valid UTF-8 become U+FFFD so the output is always valid JSON text.
 * Misuse (a value where a key is due, unbalanced ends) is a bug: TQ_ASSERT.
 */
#ifndef TQ_CLI_JSON_H
#define TQ_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 32

struct json {
    FILE *out;
    int depth;
    bool first[JSON_DEPTH_MAX]; /* no element written yet at this level */
    bool is_object[JSON_DEPTH_MAX];
    bool key_pending; /* a key was written; its value is due */
};

void json_init(struct json *j, FILE *out);
void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s);
void json_string_n(struct json *j, const char *s, size_t len);
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
/* Ends a top-level value with a newline (one JSON document per line: JSONL friendly). */
void json_end_line(struct json *j);

/* Writes s as an escaped JSON string (with quotes) to out. */
void json_write_escaped(FILE *out, const char *s, size_t len);

#endif
