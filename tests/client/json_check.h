/* tests/client/json_check.h: a strict JSON validator and path lookup for the client tests.
 *
 * Goal: check that the CLI's --json output is valid JSON (RFC 8259: no trailing commas, only
 * the escapes the RFC allows, no control characters in strings, numbers in the RFC grammar)
 * and read values out of it by path ("result.ticket_id", "queues.0.depth") without a JSON
 * library, so the tests need nothing beyond the C library. Header-only, test code only.
 */
#ifndef TQ_TEST_JSON_CHECK_H
#define TQ_TEST_JSON_CHECK_H

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jc {
    const char *p;
    const char *end;
};

static bool jc_value(struct jc *j);

static void jc_ws(struct jc *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static bool jc_string(struct jc *j) {
    if (j->p >= j->end || *j->p != '"') return false;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') return true;
        if (c < 0x20) return false;
        if (c == '\\') {
            if (j->p >= j->end) return false;
            char e = *j->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (j->p >= j->end || !isxdigit((unsigned char)*j->p)) return false;
                    j->p++;
                }
            } else if (strchr("\"\\/bfnrt", e) == NULL) {
                return false;
            }
        }
    }
    return false;
}

static bool jc_number(struct jc *j) {
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return false;
    if (*j->p == '0') {
        j->p++;
    } else {
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return false;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return false;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    return j->p > s;
}

static bool jc_literal(struct jc *j, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return false;
    j->p += n;
    return true;
}

static bool jc_container(struct jc *j, char open, char close) {
    j->p++; /* open */
    (void)open;
    jc_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    for (;;) {
        jc_ws(j);
        if (close == '}') {
            if (!jc_string(j)) return false;
            jc_ws(j);
            if (j->p >= j->end || *j->p != ':') return false;
            j->p++;
            jc_ws(j);
        }
        if (!jc_value(j)) return false;
        jc_ws(j);
        if (j->p >= j->end) return false;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return true;
        }
        return false;
    }
}

static bool jc_value(struct jc *j) {
    jc_ws(j);
    if (j->p >= j->end) return false;
    switch (*j->p) {
    case '{': return jc_container(j, '{', '}');
    case '[': return jc_container(j, '[', ']');
    case '"': return jc_string(j);
    case 't': return jc_literal(j, "true");
    case 'f': return jc_literal(j, "false");
    case 'n': return jc_literal(j, "null");
    default: return jc_number(j);
    }
}

/* True if text[0..len) is exactly one JSON value (surrounding whitespace allowed). */
static inline bool json_valid(const char *text, size_t len) {
    struct jc j = {text, text + len};
    if (!jc_value(&j)) return false;
    jc_ws(&j);
    return j.p == j.end;
}

/* Finds the value at a dotted path (object keys, or array indexes as numbers) in a valid JSON
 * text. Copies its raw text (strings without quotes, escapes left as they are) into out.
 * Returns false if the path does not exist. */
static inline bool json_get(const char *text, const char *path, char *out, size_t cap) {
    struct jc j = {text, text + strlen(text)};
    char seg[128];
    const char *rest = path;
    for (;;) {
        jc_ws(&j);
        if (*rest == '\0') break;
        const char *dot = strchr(rest, '.');
        size_t n = dot != NULL ? (size_t)(dot - rest) : strlen(rest);
        if (n >= sizeof(seg)) return false;
        memcpy(seg, rest, n);
        seg[n] = '\0';
        rest = dot != NULL ? dot + 1 : rest + n;
        if (j.p >= j.end) return false;
        if (*j.p == '{') {
            j.p++;
            bool found = false;
            for (;;) {
                jc_ws(&j);
                if (j.p >= j.end || *j.p == '}') return false;
                const char *key_start = j.p + 1;
                if (!jc_string(&j)) return false;
                size_t key_len = (size_t)(j.p - 1 - key_start);
                jc_ws(&j);
                j.p++; /* ':' */
                jc_ws(&j);
                if (key_len == strlen(seg) && memcmp(key_start, seg, key_len) == 0) {
                    found = true;
                    break;
                }
                if (!jc_value(&j)) return false;
                jc_ws(&j);
                if (j.p < j.end && *j.p == ',') j.p++;
            }
            if (!found) return false;
        } else if (*j.p == '[') {
            long index = strtol(seg, NULL, 10);
            j.p++;
            for (long i = 0; i < index; i++) {
                jc_ws(&j);
                if (j.p >= j.end || *j.p == ']') return false;
                if (!jc_value(&j)) return false;
                jc_ws(&j);
                if (j.p < j.end && *j.p == ',') j.p++;
            }
            jc_ws(&j);
            if (j.p >= j.end || *j.p == ']') return false;
        } else {
            return false;
        }
    }
    const char *start = j.p;
    if (!jc_value(&j)) return false;
    const char *stop = j.p;
    if (*start == '"') {
        start++;
        stop--;
    }
    size_t len = (size_t)(stop - start);
    if (len >= cap) len = cap - 1;
    memcpy(out, start, len);
    out[len] = '\0';
    return true;
}

/* json_get as an unsigned number; 0 if missing (callers check existence with json_get). */
static inline unsigned long long json_get_u64(const char *text, const char *path) {
    char buf[64];
    if (!json_get(text, path, buf, sizeof(buf))) return 0;
    return strtoull(buf, NULL, 10);
}

#endif
