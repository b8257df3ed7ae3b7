/* server/ops/segscan.c: reading segment images for the offline tools.
 *
 * Owns nothing on disk. It turns one segment file (plain .seg or compressed .zseg) into its
 * logical image in memory and walks the batches of that image in order. It does NOT interpret
 * the byte format itself: batches are checked by storage's own decoder (tq_batch_check, the
 * code recovery uses), records are walked with tq_batch_record_next, and compressed segments
 * are inflated through storage's segment cursor (tq_zseg_load + tq_cursor_get). So there is
 * one place that knows the log format (storage/format.c, compress.c), and verify can never
 * accept a log that recovery would refuse, or the reverse.
 *
 * Invariants: a walk only reports batches that passed every check; batches start at 4 KiB
 * multiples; the walk stops at the first batch that does not check out and says why, or at
 * zeros or a stale batch header (one left by a recycled file's earlier life: LSN below the
 * segment's name) after which no valid, non-stale batch header follows (a clean end: the unused
 * tail of a preallocated or recycled segment).
 */
#include "log_impl.h"
#include "ops_internal.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum tq_err tq_ops_segment_names(const char *log_dir, struct tq_ops_names *names,
                                 struct tq_error *error) {
    static const char *const suffixes[] = {".seg", ".zseg", NULL};
    enum tq_err err = tq_ops_names_list(log_dir, suffixes, names, error);
    if (err != TQ_OK) return err;
    size_t kept = 0;
    for (size_t i = 0; i < names->count; i++) {
        char *name = names->names[i];
        uint64_t lsn, next_lsn;
        bool drop = !tq_ops_name_lsn(name, &lsn) ||
                    (strlen(name) != 24 && strlen(name) != 25); /* 20 digits + .seg/.zseg */
        /* "X.seg" sorts right before "X.zseg": the plain one is the leftover. */
        if (!drop && i + 1 < names->count && tq_ops_name_lsn(names->names[i + 1], &next_lsn) &&
            next_lsn == lsn) {
            drop = true;
        }
        if (drop) {
            tq_free(name, strlen(name) + 1);
        } else {
            names->names[kept++] = name;
        }
    }
    names->count = kept;
    return TQ_OK;
}

void tq_ops_batch_records(const struct tq_ops_batch *batch, tq_ops_record_fn fn, void *ctx) {
    TQ_ASSERT(batch != NULL && fn != NULL);
    uint32_t offset = 0;
    uint32_t index = 0;
    struct tq_record_header rec;
    const uint8_t *payload;
    while (tq_batch_record_next(batch->area, batch->header.area_bytes, &offset, &rec, &payload)) {
        bool redacted = (rec.flags & TQ_RECORD_REDACTED) != 0;
        fn(ctx, batch->header.lsn_first + index, rec.type, rec.flags, redacted ? NULL : payload,
           rec.len);
        index++;
    }
    /* The batch passed tq_batch_check, which walked the same records. */
    TQ_ASSERT(index == batch->header.record_count);
}

/* Reads a plain segment whole. */
static enum tq_err load_plain(const char *path, struct tq_ops_segment *seg,
                              struct tq_error *error) {
    uint8_t *buf = NULL;
    size_t len = 0;
    enum tq_err err = tq_ops_file_read(path, &buf, &len, error);
    if (err != TQ_OK) return err;
    seg->image = buf;
    seg->image_bytes = len;
    seg->image_cap = len;
    seg->file_bytes = len;
    return TQ_OK;
}

/* Inflates a compressed segment through storage's cursor, one window at a time. */
static enum tq_err load_compressed(const char *path, struct tq_ops_segment *seg,
                                   struct tq_error *error) {
    struct tq_seg s;
    memset(&s, 0, sizeof(s));
    s.lsn_first = seg->lsn_first_named;
    s.path = (char *)(uintptr_t)path; /* storage only reads it (messages) */
    s.compressed = true;
    s.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s.fd < 0) {
        return tq_error_set(error, errno == ENOENT ? TQ_ERR_NOT_FOUND : TQ_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    }
    struct stat st;
    if (fstat(s.fd, &st) == 0) seg->file_bytes = (uint64_t)st.st_size;
    enum tq_err err = tq_zseg_load(&s, error);
    if (err != TQ_OK) {
        close(s.fd);
        return err;
    }
    uint64_t raw_bytes = 0;
    for (uint32_t i = 0; i < s.block_count; i++) {
        uint64_t end = s.blocks[i].raw_offset + s.blocks[i].raw_bytes;
        if (end > raw_bytes) raw_bytes = end;
    }
    uint8_t *image = raw_bytes > 0 ? tq_alloc((size_t)raw_bytes) : NULL;
    if (raw_bytes > 0 && image == NULL) {
        err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory inflating %s", path);
        goto done;
    }
    struct tq_seg_cursor cursor;
    tq_cursor_init(&cursor, &s);
    for (uint64_t offset = 0; offset < raw_bytes;) {
        const uint8_t *p = NULL;
        size_t avail = 0;
        err = tq_cursor_get(&cursor, offset, (size_t)(raw_bytes - offset), raw_bytes, &p, &avail,
                            error);
        if (err != TQ_OK) break;
        if (avail == 0) {
            err = tq_error_set(error, TQ_ERR_CORRUPT, "%s: compressed image ends at %llu of %llu",
                               path, (unsigned long long)offset, (unsigned long long)raw_bytes);
            break;
        }
        if (avail > raw_bytes - offset) avail = (size_t)(raw_bytes - offset);
        memcpy(image + offset, p, avail);
        offset += avail;
    }
    tq_cursor_free(&cursor);
    if (err != TQ_OK) {
        if (image != NULL) tq_free(image, (size_t)raw_bytes);
        goto done;
    }
    seg->image = image;
    seg->image_bytes = (size_t)raw_bytes;
    seg->image_cap = (size_t)raw_bytes;
done:
    if (s.blocks != NULL) tq_free(s.blocks, s.block_count * sizeof(struct tq_zseg_block));
    close(s.fd);
    return err;
}

enum tq_err tq_ops_segment_load(const char *dir, const char *name, struct tq_ops_segment *seg,
                                struct tq_error *error) {
    TQ_ASSERT(dir != NULL && name != NULL);
    TQ_ASSERT(seg != NULL);
    memset(seg, 0, sizeof(*seg));
    if (strlen(name) >= sizeof(seg->name) || !tq_ops_name_lsn(name, &seg->lsn_first_named)) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "%s/%s: not a segment name", dir, name);
    }
    snprintf(seg->name, sizeof(seg->name), "%s", name);
    size_t n = strlen(name);
    seg->compressed = n > 5 && strcmp(name + n - 5, ".zseg") == 0;
    char path[TQ_OPS_PATH_BYTES_MAX];
    enum tq_err err = tq_ops_path_join(path, dir, name, error);
    if (err != TQ_OK) return err;
    return seg->compressed ? load_compressed(path, seg, error) : load_plain(path, seg, error);
}

void tq_ops_segment_free(struct tq_ops_segment *seg) {
    if (seg->image != NULL) tq_free(seg->image, seg->image_cap);
    memset(seg, 0, sizeof(*seg));
}

/* Counts the batch headers that check out at 4 KiB boundaries at or after offset (stepping
 * over each one found), and the highest lsn_durable among them: batches after a hole. Any
 * count > 0 means the log continues after the hole, so the hole is not a torn tail. */
static void valid_headers_after(const struct tq_ops_segment *seg, uint64_t offset,
                                struct tq_ops_walk_end *end) {
    char why[8];
    struct tq_batch_header h;
    end->batches_after = 0;
    end->durable_after_max = 0;
    for (uint64_t at = offset; at + TQ_BATCH_HEADER_BYTES <= seg->image_bytes;) {
        enum tq_batch_check check =
            tq_batch_check(seg->image + at, seg->image_bytes - at, false, &h, why, sizeof(why));
        if (check != TQ_BATCH_VALID || tq_batch_header_stale(&h, seg->lsn_first_named)) {
            at += TQ_BATCH_ALIGN_BYTES;
            continue;
        }
        end->batches_after++;
        if (h.lsn_durable > end->durable_after_max) end->durable_after_max = h.lsn_durable;
        at += tq_batch_disk_bytes(h.area_bytes);
    }
    end->valid_after = end->batches_after > 0;
}

enum tq_err tq_ops_segment_walk(const struct tq_ops_segment *seg, tq_ops_batch_fn fn, void *ctx,
                                struct tq_ops_walk_end *end, struct tq_error *error) {
    TQ_ASSERT(seg != NULL && end != NULL);
    memset(end, 0, sizeof(*end));
    uint64_t offset = 0;
    while (offset < seg->image_bytes) {
        TQ_ASSERT(offset % TQ_BATCH_ALIGN_BYTES == 0);
        struct tq_ops_batch batch;
        memset(&batch, 0, sizeof(batch));
        enum tq_batch_check check = tq_batch_check(seg->image + offset, seg->image_bytes - offset,
                                                   true, &batch.header, end->why, sizeof(end->why));
        struct tq_batch_header stale;
        char stale_why[8];
        enum tq_batch_check head = tq_batch_check(seg->image + offset, seg->image_bytes - offset,
                                                  false, &stale, stale_why, sizeof(stale_why));
        if ((head == TQ_BATCH_VALID || head == TQ_BATCH_TRUNCATED) &&
            tq_batch_header_stale(&stale, seg->lsn_first_named)) {
            /* an earlier life of a recycled segment file: the end of the data, as zeros
             * (docs/log-format.md, "Recycled segments") */
            check = TQ_BATCH_ZERO;
        }
        if (check == TQ_BATCH_ZERO) {
            valid_headers_after(seg, offset + TQ_BATCH_ALIGN_BYTES, end);
            if (end->valid_after) {
                end->stop_offset = offset;
                snprintf(end->why, sizeof(end->why),
                         "zeros where a batch header was expected, but valid batches follow");
                return TQ_OK;
            }
            end->clean = true;
            return TQ_OK;
        }
        if (check != TQ_BATCH_VALID) {
            end->stop_offset = offset;
            valid_headers_after(seg, offset + TQ_BATCH_ALIGN_BYTES, end);
            return TQ_OK;
        }
        batch.file = seg->name;
        batch.offset = offset;
        batch.area = seg->image + offset + TQ_BATCH_HEADER_BYTES;
        batch.disk_bytes = tq_batch_disk_bytes(batch.header.area_bytes);
        if (fn != NULL) {
            enum tq_err err = fn(ctx, &batch, error);
            if (err != TQ_OK) return err;
        }
        end->batches++;
        end->lsn_last = batch.header.lsn_first + batch.header.record_count - 1;
        end->chain_last = batch.header.header_hash;
        offset += batch.disk_bytes;
        end->valid_bytes = offset;
    }
    end->clean = true;
    return TQ_OK;
}

/* Collects the highest lsn_durable of the walked batches. */
static enum tq_err durable_max_batch(void *ctx, const struct tq_ops_batch *batch,
                                     struct tq_error *error) {
    (void)error;
    uint64_t *durable_max = ctx;
    if (batch->header.lsn_durable > *durable_max) *durable_max = batch->header.lsn_durable;
    return TQ_OK;
}

bool tq_ops_live_hole(const char *data_dir, const char *log_dir, const struct tq_ops_names *names,
                      size_t index, const struct tq_ops_walk_end *end, uint64_t stop_lsn,
                      const char **why_not) {
    TQ_ASSERT(data_dir != NULL && log_dir != NULL && names != NULL && end != NULL);
    TQ_ASSERT(index < names->count);
    const char *ignored;
    if (why_not == NULL) why_not = &ignored;
    *why_not = NULL;
    if (index + 2 < names->count) {
        *why_not = "it is not in the tail segment";
        return false;
    }
    uint64_t after = end->clean ? 0 : end->batches_after;
    uint64_t durable_max = end->clean ? 0 : end->durable_after_max;
    if (index + 2 == names->count) {
        /* The writer rolled to the last segment while this one's last batch was in flight:
         * the last segment's batches count toward the bound too. */
        struct tq_ops_segment last;
        struct tq_error error;
        if (tq_ops_segment_load(log_dir, names->names[index + 1], &last, &error) != TQ_OK) {
            *why_not = "the last segment cannot be read";
            return false;
        }
        struct tq_ops_walk_end last_end;
        enum tq_err err =
            tq_ops_segment_walk(&last, durable_max_batch, &durable_max, &last_end, &error);
        tq_ops_segment_free(&last);
        TQ_ASSERT(err == TQ_OK); /* durable_max_batch never fails */
        after += last_end.batches + (last_end.clean ? 0 : last_end.batches_after);
        if (!last_end.clean && last_end.durable_after_max > durable_max)
            durable_max = last_end.durable_after_max;
    }
    if (after == 0 && !end->clean) {
        *why_not = "nothing follows (a torn tail, not a hole)";
    } else if (after > TQ_BATCHES_INFLIGHT_MAX - 1) {
        *why_not = "more valid batches follow than a writer keeps in flight";
    } else if (durable_max >= stop_lsn) {
        *why_not = "a later batch shows it was durable";
    } else if (!tq_log_dir_locked(data_dir)) {
        *why_not = "no live writer holds " TQ_LOG_LOCK_NAME;
    }
    return *why_not == NULL;
}
