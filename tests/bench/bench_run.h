/* tests/bench/bench_run.h: running the ticketq-bench binary from the bench tests.
 *
 * Shared by test_redis.c and test_ticketq.c: run_bench() forks $TQ_BUILD_DIR/bench/ticketq-bench
 * with the given arguments, its stdout to a file, and returns its exit code; file_contains()
 * checks that file for a JSON fragment.
 */
#ifndef TQ_BENCH_RUN_H
#define TQ_BENCH_RUN_H

#include "tq_test.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs ticketq-bench with args; returns its exit code; stdout goes to out_path. */
static int run_bench(const char *out_path, const char *const *args) {
    const char *build = getenv("TQ_BUILD_DIR");
    TQ_CHECK(build != NULL);
    char exe[512];
    snprintf(exe, sizeof(exe), "%s/bench/ticketq-bench", build);
    char *argv[48]; /* execv's prototype wants char *const[]; it does not write them */
    int argc = 0;
    argv[argc++] = exe;
    for (int i = 0; args[i] != NULL && argc < 47; i++)
        argv[argc++] = (char *)(uintptr_t)args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(126);
        execv(exe, argv);
        _exit(127);
    }
    int status = 0;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    TQ_CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static bool file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

#endif
