/* storage/dirlock.c: the data-directory lock, DIR/LOCK.
 *
 * One process at a time may write a data directory: ticketqd for its whole lifetime, and the
 * offline tools that write it (compact --data, restore into it). Each takes an exclusive
 * flock(2) on DIR/LOCK with LOCK_NB and refuses at once when another process holds it; the
 * holder's pid is written into the file so the refusal can name it. Readers (verify, replay,
 * backup) take no lock: they read up to the last valid batch, safe beside a live writer. They
 * only ask whether a writer is alive (tq_log_dir_locked): beside one, a hole in the tail of
 * the log is its batches in flight, not damage (docs/log-format.md).
 * flock is released by the kernel when the holder exits, however it dies (kill -9 included),
 * so a stale LOCK file never blocks anyone; the file itself is left in place on purpose
 * (removing it would race with the next taker).
 */
#include "log.h"

#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

enum tq_err tq_log_dir_lock(const char *dir, const char *holder, int *fd_out,
                            struct tq_error *error) {
    TQ_ASSERT(dir != NULL && holder != NULL);
    TQ_ASSERT(fd_out != NULL);
    *fd_out = -1;
    char path[4200];
    snprintf(path, sizeof(path), "%s/" TQ_LOG_LOCK_NAME, dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND, "no data directory %s", dir);
    }
    if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char text[128] = "";
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK) {
            return tq_error_set(error, TQ_ERR_IO, "flock %s: %s", path, strerror(e));
        }
        text[n > 0 ? n : 0] = '\0';
        text[strcspn(text, "\n")] = '\0';
        return tq_error_set(error, TQ_ERR_UNAVAILABLE,
                            "data directory %s is in use by another process (%s): stop it first",
                            dir, text[0] != '\0' ? text : "holder unknown");
    }
    /* "ticketqd pid 1234": informational only, the flock is the lock. */
    char line[128];
    int len = snprintf(line, sizeof(line), "%s pid %ld\n", holder, (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != (ssize_t)len) {
        /* The lock is held all the same; the text only helps the message of the next one. */
    }
    *fd_out = fd;
    return TQ_OK;
}

void tq_log_dir_unlock(int fd) {
    if (fd >= 0) close(fd); /* releases the flock */
}

bool tq_log_dir_locked(const char *dir) {
    TQ_ASSERT(dir != NULL);
    char path[4200];
    int n = snprintf(path, sizeof(path), "%s/" TQ_LOG_LOCK_NAME, dir);
    TQ_ASSERT(n > 0);
    if ((size_t)n >= sizeof(path)) return false;
    /* O_RDONLY: a reader may have no write permission on the directory's files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    int rc;
    do {
        rc = flock(fd, LOCK_SH | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    bool held = rc != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the probe's shared lock, if it got one */
    return held;
}
