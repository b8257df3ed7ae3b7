/* proto/tq_err.h: the shared error vocabulary of every ticketq target.
 *
 * Three kinds of failure, never mixed up (see docs/architecture.md):
 *   1. a bug: a failed TQ_ASSERT, the process aborts (tq_assert.h);
 *   2. an expected failure (bad input, limit exceeded, not found, corrupt bytes, ENOSPC): the
 *      function returns an enum tq_err and fills a struct tq_error with the specifics;
 *   3. a broken durability promise (write/fdatasync error on the log): tq_fatal(), fail-stop.
 *
 * The first codes (1..7) are exactly the protocol's error types (docs/protocol.md); the rest are
 * internal and map to UNAVAILABLE or INTERNAL on the wire.
 */
#ifndef TQ_ERR_H
#define TQ_ERR_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define TQ_NODISCARD                     __attribute__((warn_unused_result))
#define TQ_PRINTF(fmt_index, args_index) __attribute__((format(printf, fmt_index, args_index)))
#define TQ_NORETURN                      __attribute__((noreturn))
#else
#define TQ_NODISCARD
#define TQ_PRINTF(fmt_index, args_index)
#define TQ_NORETURN
#endif

enum tq_err {
    TQ_OK = 0,
    TQ_ERR_INVALID_ARGUMENT = 1,    /* the request itself is wrong; retrying cannot help */
    TQ_ERR_NOT_FOUND = 2,           /* no such entity (or it belongs to another tenant) */
    TQ_ERR_FAILED_PRECONDITION = 3, /* valid request, but the current state forbids it */
    TQ_ERR_UNAUTHENTICATED = 4,     /* no, unknown or revoked token */
    TQ_ERR_PERMISSION_DENIED = 5,   /* the token's role may not do this */
    TQ_ERR_RESOURCE_EXHAUSTED = 6,  /* a limit was hit (frame, in-flight, capacity, disk) */
    TQ_ERR_UNAVAILABLE = 7,         /* try again later (shutting down, log read-only) */
    TQ_ERR_ALREADY_EXISTS = 8,      /* a unique key is taken (wire: FAILED_PRECONDITION) */
    TQ_ERR_CORRUPT = 9,             /* bytes on disk or wire fail validation */
    TQ_ERR_IO = 10,                 /* an operating-system I/O error that is not fatal */
    TQ_ERR_NO_SPACE = 11,           /* ENOSPC: appends rejected, reads keep working */
    TQ_ERR_INTERNAL = 12,           /* should not happen; a bug that was caught cleanly */
};

#define TQ_ERROR_MSG_BYTES_MAX 512

/* Specifics of an expected failure. msg is one human-readable line, NUL-terminated. */
struct tq_error {
    enum tq_err code;
    char msg[TQ_ERROR_MSG_BYTES_MAX];
};

/* Returns a stable lower-case name ("invalid_argument", ...) for code. Never NULL. */
const char *tq_err_name(enum tq_err code);

/* Sets error (if not NULL) to code and the formatted message; returns code, so callers can
 * write `return tq_error_set(error, TQ_ERR_NOT_FOUND, "ticket %u", id);`. */
enum tq_err tq_error_set(struct tq_error *error, enum tq_err code, const char *fmt, ...)
    TQ_PRINTF(3, 4);
enum tq_err tq_error_setv(struct tq_error *error, enum tq_err code, const char *fmt, va_list ap)
    TQ_PRINTF(3, 0);

/* Resets error to TQ_OK with an empty message. */
void tq_error_clear(struct tq_error *error);

#endif
