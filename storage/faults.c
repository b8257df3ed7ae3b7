/* storage/faults.c: the fault-injection seam (see faults.h for the contract).
 *
 * Owns the list of unsynced written ranges and the power-cut simulation. Invariants: a range is
 * recorded before its write is submitted (so its old bytes are the pre-write bytes); ranges of
 * one file are applied in reverse order at a power cut, so overlapping writes restore the
 * oldest bytes. Costs nothing when the log has no faults struct (the log skips every call).
 */
#include "faults.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

struct tq_io_range {
    struct tq_io_range *next; /* newest first */
    char *path;
    uint64_t offset;
    uint32_t len;
    uint64_t seq;
    uint8_t *old_bytes; /* len bytes as they were before the write */
};

int tq_io_faults_on_op(struct tq_io_faults *faults, enum tq_io_op_kind kind, uint32_t len,
                       uint32_t *short_len_out) {
    TQ_ASSERT(faults != NULL);
    *short_len_out = 0;
    faults->ops++;
    if (kind == TQ_IO_OP_WRITE) faults->writes++;
    if (kind == TQ_IO_OP_FSYNC) faults->fsyncs++;
    if (faults->fail_op_at != 0 && faults->ops == faults->fail_op_at) {
        faults->injected++;
        return kind == TQ_IO_OP_PREALLOC ? -ENOSPC : -EIO;
    }
    if (kind == TQ_IO_OP_PREALLOC && faults->enospc) {
        faults->injected++;
        return -ENOSPC;
    }
    if (kind == TQ_IO_OP_WRITE && faults->short_write_at != 0 &&
        faults->writes == faults->short_write_at && len > 1) {
        faults->injected++;
        *short_len_out = len / 2;
        return 0;
    }
    if (kind == TQ_IO_OP_FSYNC && faults->fsync_eio_at != 0 &&
        faults->fsyncs == faults->fsync_eio_at) {
        faults->injected++;
        return -EIO;
    }
    return 0;
}

uint64_t tq_io_faults_seq(struct tq_io_faults *faults) {
    return ++faults->seq;
}

void tq_io_faults_on_write(struct tq_io_faults *faults, const char *path, int fd, uint64_t offset,
                           uint32_t len) {
    TQ_ASSERT(faults != NULL);
    TQ_ASSERT(len > 0);
    if (!faults->track_unsynced) return;
    struct tq_io_range *r = tq_xcalloc(1, sizeof(*r));
    r->path = tq_strdup(path);
    TQ_ASSERT(r->path != NULL);
    r->offset = offset;
    r->len = len;
    r->seq = tq_io_faults_seq(faults);
    r->old_bytes = tq_xcalloc(1, len);
    ssize_t got = pread(fd, r->old_bytes, len, (off_t)offset);
    (void)got; /* bytes past the end read as zeros: the calloc'd buffer already says so */
    r->next = faults->ranges;
    faults->ranges = r;
}

static void range_free(struct tq_io_range *r) {
    tq_free(r->path, strlen(r->path) + 1);
    tq_free(r->old_bytes, r->len);
    tq_free(r, sizeof(*r));
}

void tq_io_faults_on_synced(struct tq_io_faults *faults, const char *path, uint64_t sync_seq) {
    struct tq_io_range **link = &faults->ranges;
    while (*link != NULL) {
        struct tq_io_range *r = *link;
        if (r->seq < sync_seq && strcmp(r->path, path) == 0) {
            *link = r->next;
            range_free(r);
        } else {
            link = &r->next;
        }
    }
}

void tq_io_faults_reset(struct tq_io_faults *faults) {
    while (faults->ranges != NULL) {
        struct tq_io_range *r = faults->ranges;
        faults->ranges = r->next;
        range_free(r);
    }
}

static uint64_t mix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tq_io_faults_power_cut(struct tq_io_faults *faults, enum tq_power_cut_mode mode,
                                uint64_t seed) {
    uint64_t damaged = 0;
    uint64_t rng = seed;
    /* Newest first: restoring in this order leaves the oldest old bytes in place. */
    for (struct tq_io_range *r = faults->ranges; r != NULL; r = r->next) {
        uint64_t choice = mode == TQ_POWER_CUT_DROP_ALL   ? 0
                          : mode == TQ_POWER_CUT_KEEP_ALL ? 1
                                                          : mix(&rng) % 3;
        if (choice == 1) continue;
        int fd = open(r->path, O_WRONLY);
        if (fd < 0) continue; /* the file is gone (renamed or removed): nothing to damage */
        if (choice == 0) {
            ssize_t put = pwrite(fd, r->old_bytes, r->len, (off_t)r->offset);
            TQ_ASSERT(put == (ssize_t)r->len);
        } else {
            uint32_t sectors = (r->len + 511) / 512;
            uint32_t keep = (uint32_t)(mix(&rng) % sectors) * 512;
            uint32_t rest = r->len - keep;
            uint8_t *tail = tq_xalloc(rest);
            bool garbage = (mix(&rng) & 1) != 0;
            for (uint32_t i = 0; i < rest; i++) {
                tail[i] = garbage ? (uint8_t)mix(&rng) : 0;
            }
            ssize_t put = pwrite(fd, tail, rest, (off_t)(r->offset + keep));
            TQ_ASSERT(put == (ssize_t)rest);
            tq_free(tail, rest);
        }
        close(fd);
        damaged++;
    }
    tq_io_faults_reset(faults);
    return damaged;
}
