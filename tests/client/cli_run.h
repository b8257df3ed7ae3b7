/* tests/client/cli_run.h: runs the `ticketq` binary and checks its output (test code only).
 *
 * cli_exec() forks and execs $TQ_BUILD_DIR/client/cli/ticketq with the given arguments,
 * capturing stdout and stderr through files in cli_run_dir (so neither can fill a pipe and
 * block the child) and the exit code. expect_json() checks that stdout is one valid JSON
 * document per line (json_check.h); expect_one_line_error() checks the exit code and that
 * stderr is exactly one line containing a needle.
 */
#ifndef TQ_TEST_CLI_RUN_H
#define TQ_TEST_CLI_RUN_H

#include "json_check.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

static char cli_run_dir[256]; /* where the captured output goes; set by the test */

#define OUT_BYTES (256 * 1024)
#define ARGS_MAX  32

struct run {
    int status; /* exit code */
    char out[OUT_BYTES];
    char err[8192];
};

static inline void read_fd(int fd, char *buf, size_t cap) {
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    buf[n] = '\0';
}

/* Runs the CLI with the NULL-terminated arguments; captures output (temp files, so neither
 * pipe can fill up and block the child). */
static inline void cli_exec(struct run *r, ...) {
    const char *argv[ARGS_MAX];
    int argc = 0;
    argv[argc++] = tq_fixture_bin("client/cli/ticketq");
    static char bin[1024];
    snprintf(bin, sizeof(bin), "%s", argv[0]);
    argv[0] = bin;
    va_list ap;
    va_start(ap, r);
    for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *)) {
        TQ_CHECK_LT(argc, ARGS_MAX - 1);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof(out_path), "%s/cli.out", cli_run_dir);
    snprintf(err_path, sizeof(err_path), "%s/cli.err", cli_run_dir);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        union {
            const char **c;
            char **m;
        } args = {.c = argv};
        execv(bin, args.m);
        _exit(127);
    }
    int status = 0;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    TQ_CHECK(WIFEXITED(status));
    r->status = WEXITSTATUS(status);
    int fd = open(out_path, O_RDONLY);
    TQ_CHECK(fd >= 0);
    read_fd(fd, r->out, sizeof(r->out));
    close(fd);
    fd = open(err_path, O_RDONLY);
    TQ_CHECK(fd >= 0);
    read_fd(fd, r->err, sizeof(r->err));
    close(fd);
}

/* Expects success and one valid JSON document per output line. */
static inline void expect_json(const struct run *r, const char *what) {
    if (r->status != 0) {
        fprintf(stderr, "%s: exit %d, stderr: %s\n", what, r->status, r->err);
        TQ_CHECK_EQ(r->status, 0);
    }
    const char *line = r->out;
    int lines = 0;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        TQ_CHECK(nl != NULL); /* every document ends with a newline */
        if (!json_valid(line, (size_t)(nl - line))) {
            fprintf(stderr, "%s: invalid JSON line: %.*s\n", what, (int)(nl - line), line);
            TQ_CHECK(false);
        }
        lines++;
        line = nl + 1;
    }
    TQ_CHECK_GT(lines, 0);
}

/* Like expect_json, but no output at all is fine too. */
static inline void expect_json_or_empty(const struct run *r, const char *what) {
    if (r->out[0] != '\0') {
        expect_json(r, what);
    } else {
        TQ_CHECK_EQ(r->status, 0);
    }
}

static inline void expect_one_line_error(const struct run *r, int code, const char *needle) {
    if (r->status != code || strstr(r->err, needle) == NULL) {
        fprintf(stderr, "expected exit %d with \"%s\", got %d: %s\n", code, needle, r->status,
                r->err);
        TQ_CHECK(false);
    }
    const char *nl = strchr(r->err, '\n');
    TQ_CHECK(nl != NULL && nl[1] == '\0'); /* exactly one line */
}

#endif
