/* server/ops/util.c: file, directory, time and option helpers of tq_ops.
 *
 * Owns the crash-safety discipline of every file the tools write: a file is written under a
 * ".tmp" name, fsynced, renamed over its final name, and the directory is fsynced, so a reader
 * (or a crash) sees either the old file or the new one, never a mix. Copies hash what they
 * copy (XXH3-64) in the same pass, so a manifest entry always describes the exact bytes that
 * reached the destination. Nothing here knows the log format.
 */
#include "ops_internal.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define COPY_CHUNK_BYTES (1u << 20) /* 1 MiB: large enough for sequential throughput */

bool tq_ops_u64_parse(const char *s, uint64_t *out) {
    TQ_ASSERT(out != NULL);
    if (s == NULL || s[0] < '0' || s[0] > '9') return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == NULL || *end != '\0') return false;
    *out = (uint64_t)v;
    return true;
}

enum tq_err tq_ops_path_join(char *out, const char *dir, const char *name, struct tq_error *error) {
    TQ_ASSERT(out != NULL);
    TQ_ASSERT(dir != NULL && name != NULL);
    int n = snprintf(out, TQ_OPS_PATH_BYTES_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= TQ_OPS_PATH_BYTES_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "path too long: %s/%s", dir, name);
    }
    return TQ_OK;
}

static enum tq_err errno_error(struct tq_error *error, const char *what, const char *path) {
    int e = errno;
    enum tq_err code = e == ENOENT ? TQ_ERR_NOT_FOUND : e == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO;
    return tq_error_set(error, code, "%s %s: %s", what, path, strerror(e));
}

/* Reads exactly len bytes at offset; TQ_ERR_IO on error or early EOF. */
static enum tq_err pread_full(int fd, const char *path, void *buf, size_t len, uint64_t offset,
                              struct tq_error *error) {
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, p + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(error, "read", path);
        if (n == 0) {
            return tq_error_set(error, TQ_ERR_IO, "read %s: unexpected end of file at %llu", path,
                                (unsigned long long)(offset + done));
        }
        done += (size_t)n;
    }
    return TQ_OK;
}

static enum tq_err write_full(int fd, const char *path, const void *buf, size_t len,
                              struct tq_error *error) {
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(error, "write", path);
        done += (size_t)n;
    }
    return TQ_OK;
}

enum tq_err tq_ops_file_read(const char *path, uint8_t **buf_out, size_t *len_out,
                             struct tq_error *error) {
    TQ_ASSERT(path != NULL);
    TQ_ASSERT(buf_out != NULL && len_out != NULL);
    *buf_out = NULL;
    *len_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(error, "open", path);
    struct stat st;
    enum tq_err err = TQ_OK;
    if (fstat(fd, &st) != 0) {
        err = errno_error(error, "stat", path);
        goto fail;
    }
    size_t len = (size_t)st.st_size;
    if (len > 0) {
        uint8_t *buf = tq_alloc(len);
        if (buf == NULL) {
            err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory reading %s", path);
            goto fail;
        }
        err = pread_full(fd, path, buf, len, 0, error);
        if (err != TQ_OK) {
            tq_free(buf, len);
            goto fail;
        }
        *buf_out = buf;
        *len_out = len;
    }
fail:
    close(fd);
    return err;
}

/* The directory part of path (everything before the last '/'), or "." */
static void dir_of(const char *path, char *out) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, TQ_OPS_PATH_BYTES_MAX, ".");
    } else if (slash == path) {
        snprintf(out, TQ_OPS_PATH_BYTES_MAX, "/");
    } else {
        snprintf(out, TQ_OPS_PATH_BYTES_MAX, "%.*s", (int)(slash - path), path);
    }
}

enum tq_err tq_ops_file_write_atomic(const char *path, const void *buf, size_t len,
                                     struct tq_error *error) {
    TQ_ASSERT(path != NULL);
    TQ_ASSERT(buf != NULL || len == 0);
    char tmp[TQ_OPS_PATH_BYTES_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "path too long: %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error(error, "create", tmp);
    enum tq_err err = write_full(fd, tmp, buf, len, error);
    if (err == TQ_OK && fsync(fd) != 0) err = errno_error(error, "fsync", tmp);
    close(fd);
    if (err == TQ_OK && rename(tmp, path) != 0) err = errno_error(error, "rename", tmp);
    if (err != TQ_OK) {
        unlink(tmp);
        return err;
    }
    char dir[TQ_OPS_PATH_BYTES_MAX];
    dir_of(path, dir);
    return tq_ops_dir_fsync(dir, error);
}

enum tq_err tq_ops_file_copy(const char *src, const char *dst, uint64_t len, uint64_t *xxh3_out,
                             uint64_t *len_out, struct tq_error *error) {
    TQ_ASSERT(src != NULL && dst != NULL);
    TQ_ASSERT(strcmp(src, dst) != 0);
    char tmp[TQ_OPS_PATH_BYTES_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", dst) >= (int)sizeof(tmp)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "path too long: %s", dst);
    }
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return errno_error(error, "open", src);
    enum tq_err err = TQ_OK;
    int out = -1;
    uint8_t *chunk = NULL;
    XXH3_state_t *state = XXH3_createState();
    struct stat st;
    if (state == NULL || fstat(in, &st) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "copy %s: stat or hash state failed", src);
        goto fail;
    }
    XXH3_64bits_reset(state);
    uint64_t want = (uint64_t)st.st_size < len ? (uint64_t)st.st_size : len;
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        err = errno_error(error, "create", tmp);
        goto fail;
    }
    chunk = tq_alloc(COPY_CHUNK_BYTES);
    if (chunk == NULL) {
        err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory copying %s", src);
        goto fail;
    }
    for (uint64_t done = 0; done < want;) {
        size_t n = want - done < COPY_CHUNK_BYTES ? (size_t)(want - done) : COPY_CHUNK_BYTES;
        err = pread_full(in, src, chunk, n, done, error);
        if (err != TQ_OK) goto fail;
        err = write_full(out, tmp, chunk, n, error);
        if (err != TQ_OK) goto fail;
        XXH3_64bits_update(state, chunk, n);
        done += n;
    }
    if (fsync(out) != 0) {
        err = errno_error(error, "fsync", tmp);
        goto fail;
    }
    close(out);
    out = -1;
    if (rename(tmp, dst) != 0) {
        err = errno_error(error, "rename", tmp);
        goto fail;
    }
    if (xxh3_out != NULL) *xxh3_out = XXH3_64bits_digest(state);
    if (len_out != NULL) *len_out = want;
fail:
    if (out >= 0) {
        close(out);
        unlink(tmp);
    }
    if (chunk != NULL) tq_free(chunk, COPY_CHUNK_BYTES);
    if (state != NULL) XXH3_freeState(state);
    close(in);
    return err;
}

enum tq_err tq_ops_file_hash(const char *path, uint64_t *xxh3_out, uint64_t *len_out,
                             struct tq_error *error) {
    TQ_ASSERT(path != NULL);
    TQ_ASSERT(xxh3_out != NULL && len_out != NULL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(error, "open", path);
    enum tq_err err = TQ_OK;
    uint8_t *chunk = tq_alloc(COPY_CHUNK_BYTES);
    XXH3_state_t *state = XXH3_createState();
    struct stat st;
    if (chunk == NULL || state == NULL || fstat(fd, &st) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "hash %s: out of memory or stat failed", path);
        goto fail;
    }
    XXH3_64bits_reset(state);
    uint64_t size = (uint64_t)st.st_size;
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < COPY_CHUNK_BYTES ? (size_t)(size - done) : COPY_CHUNK_BYTES;
        err = pread_full(fd, path, chunk, n, done, error);
        if (err != TQ_OK) goto fail;
        XXH3_64bits_update(state, chunk, n);
        done += n;
    }
    *xxh3_out = XXH3_64bits_digest(state);
    *len_out = size;
fail:
    if (chunk != NULL) tq_free(chunk, COPY_CHUNK_BYTES);
    if (state != NULL) XXH3_freeState(state);
    close(fd);
    return err;
}

enum tq_err tq_ops_dir_fsync(const char *dir, struct tq_error *error) {
    TQ_ASSERT(dir != NULL);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_error(error, "open directory", dir);
    enum tq_err err = TQ_OK;
    if (fsync(fd) != 0) err = errno_error(error, "fsync directory", dir);
    close(fd);
    return err;
}

enum tq_err tq_ops_mkdir(const char *dir, struct tq_error *error) {
    TQ_ASSERT(dir != NULL);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return errno_error(error, "mkdir", dir);
    return TQ_OK;
}

static bool has_suffix(const char *name, const char *suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum tq_err tq_ops_names_list(const char *dir, const char *const *suffixes,
                              struct tq_ops_names *names, struct tq_error *error) {
    TQ_ASSERT(dir != NULL && suffixes != NULL);
    TQ_ASSERT(names != NULL);
    memset(names, 0, sizeof(*names));
    DIR *d = opendir(dir);
    if (d == NULL) return errno_error(error, "open directory", dir);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        bool match = false;
        for (size_t i = 0; suffixes[i] != NULL; i++) {
            if (has_suffix(ent->d_name, suffixes[i])) match = true;
        }
        if (!match) continue;
        if (names->count == names->cap) {
            size_t cap = names->cap == 0 ? 16 : names->cap * 2;
            names->names =
                tq_xrealloc(names->names, names->cap * sizeof(char *), cap * sizeof(char *));
            names->cap = cap;
        }
        names->names[names->count++] = tq_strdup(ent->d_name);
        TQ_ASSERT(names->names[names->count - 1] != NULL);
    }
    closedir(d);
    if (names->count > 1) qsort(names->names, names->count, sizeof(char *), name_cmp);
    return TQ_OK;
}

void tq_ops_names_free(struct tq_ops_names *names) {
    for (size_t i = 0; i < names->count; i++) {
        tq_free(names->names[i], strlen(names->names[i]) + 1);
    }
    if (names->names != NULL) tq_free(names->names, names->cap * sizeof(char *));
    memset(names, 0, sizeof(*names));
}

bool tq_ops_name_lsn(const char *name, uint64_t *lsn_out) {
    TQ_ASSERT(name != NULL && lsn_out != NULL);
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    if (name[20] != '.') return false;
    *lsn_out = v;
    return true;
}

void tq_ops_print_error(const char *tool, const struct tq_error *error) {
    fprintf(stderr, "ticketq %s: %s: %s\n", tool, tq_err_name(error->code), error->msg);
}

void tq_ops_args_init(struct tq_ops_args *args, int argc, char **argv, const char *tool) {
    TQ_ASSERT(args != NULL && tool != NULL);
    TQ_ASSERT(argc >= 1);
    args->argc = argc;
    args->argv = argv;
    args->index = 1;
    args->tool = tool;
}

bool tq_ops_args_take(struct tq_ops_args *args, const char *name, const char **value, bool *bad) {
    TQ_ASSERT(args->index < args->argc);
    const char *arg = args->argv[args->index];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return false;
    if (value == NULL) {
        if (arg[n] != '\0') return false;
        args->index++;
        return true;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        args->index++;
        return true;
    }
    if (arg[n] != '\0') return false;
    if (args->index + 1 >= args->argc) {
        fprintf(stderr, "ticketq %s: option %s needs a value\n", args->tool, name);
        *bad = true;
        args->index++;
        return true;
    }
    *value = args->argv[args->index + 1];
    args->index += 2;
    return true;
}

/* ---- time ------------------------------------------------------------------------------ */

const char *tq_ops_time_format(uint64_t ms, char *buf) {
    TQ_ASSERT(buf != NULL);
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(buf, TQ_OPS_TIME_BYTES, "@%llu", (unsigned long long)ms);
        return buf;
    }
    snprintf(buf, TQ_OPS_TIME_BYTES, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
    return buf;
}

/* Parses exactly n digits at *p into *out and advances *p. */
static bool digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

bool tq_ops_time_parse(const char *s, uint64_t *ms_out) {
    TQ_ASSERT(s != NULL && ms_out != NULL);
    const char *p = s;
    int year, mon, day, hour, min, sec = 0, milli = 0;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
        !digits(&p, 2, &day)) {
        return false;
    }
    if (*p != 'T' && *p != ' ') return false;
    p++;
    if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min)) return false;
    if (*p == ':') {
        p++;
        if (!digits(&p, 2, &sec)) return false;
        if (*p == '.') {
            p++;
            if (!digits(&p, 3, &milli)) return false;
        }
    }
    if (*p == 'Z') p++;
    if (*p != '\0') return false;
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60) {
        return false;
    }
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t < 0) return false;
    *ms_out = (uint64_t)t * 1000 + (uint64_t)milli;
    return true;
}

/* Allocated bytes (st_blocks) of the regular files directly in dir; 0 if it cannot be read. */
static uint64_t dir_allocated_bytes(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    uint64_t total = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        char path[TQ_OPS_PATH_BYTES_MAX];
        struct tq_error ignored;
        struct stat st;
        if (ent->d_name[0] == '.' || tq_ops_path_join(path, dir, ent->d_name, &ignored) != TQ_OK) {
            continue;
        }
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_blocks * 512u;
    }
    closedir(d);
    return total;
}

uint64_t tq_ops_data_bytes(const char *dir) {
    char log_dir[TQ_OPS_PATH_BYTES_MAX], snap_dir[TQ_OPS_PATH_BYTES_MAX];
    struct tq_error ignored;
    if (tq_ops_path_join(log_dir, dir, "log", &ignored) != TQ_OK ||
        tq_ops_path_join(snap_dir, dir, "snapshots", &ignored) != TQ_OK) {
        return 0;
    }
    return dir_allocated_bytes(log_dir) + dir_allocated_bytes(snap_dir);
}
