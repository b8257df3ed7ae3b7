/* server/state/snapshot.c: the state's canonical serialisation, used for snapshots
 * (tq_state_serialize / tq_state_deserialize) and for the digest (tq_state_digest).
 *
 * Blob layout (little-endian):
 *   offset  size  field
 *   0       8     magic "TQSTATE\0"
 *   8       4     version (2; version 1, without the customer's erased flag, still loads)
 *   12      4     reserved (0)
 *   16      8     body length in bytes
 *   24      8     XXH3-64 of the body
 *   32      ...   body
 * Body: lsn, the entity counts, then every entity kind in id order (interns, tenants with their
 * settings, policies, calendar, queue/agent id lists, consumers, analytics and outbox lists,
 * tokens, queues, agents, customers, identities, tickets, messages); each field written
 * explicitly (u8/u32/u64; strings as u32 length + bytes). Only persistent fields are written:
 * hash tables, heaps, chains, positions and loads are derived and rebuilt on load
 * (tq_st_rebuild_indices), so the body does not depend on hash-table layout, heap shape or
 * allocation history. The digest is XXH3-128 of the body without the leading LSN: a state
 * rebuilt by replay and the same state loaded from a snapshot serialise to the same bytes, and
 * a command that changes nothing (an idempotent duplicate) leaves the digest as it was.
 *
 * Loading validates every id reference and enum range before rebuilding (TQ_ERR_CORRUPT),
 * so a damaged blob that passes the checksum still cannot make the loader index out of bounds.
 */
#include "state_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#define SNAP_MAGIC        "TQSTATE"
#define SNAP_VERSION      2u /* 2: customers carry the erased flag (u8) */
#define SNAP_HEADER_BYTES 32u

/* ---- writer ------------------------------------------------------------------------------- */

/* Two modes. Heap (map_bytes == 0): a doubling tq_alloc buffer, for the digest and
 * tq_state_serialize. Image (tq_state_serialize_image): an anonymous mapping grown with mremap
 * (the kernel moves page tables, no byte is copied), and the body is hashed as it is written,
 * HASH_STEP bytes at a time while they are still in the cache: `cap` is then a soft limit that
 * sends the writer to sw_grow every HASH_STEP bytes, so the per-field fast path is unchanged. */
struct sw {
    uint8_t *buf;
    size_t len, cap;
    size_t map_bytes;   /* image mode: the mapping's length; 0 in heap mode */
    size_t hashed;      /* image mode: bytes [hash_from, hashed) are in `hash` */
    XXH3_state_t *hash; /* image mode: running XXH3-64 of the body */
    size_t rewind_to;   /* image mode: where writing restarts after a failed mremap */
    bool failed;        /* image mode: a mremap failed; the bytes are garbage */
};

/* Image mode hashes the body in steps of this many bytes: small enough to be in L2 when
 * hashed, large enough that the step's bookkeeping is noise. */
#define HASH_STEP (256u * 1024)

static void sw_hash_upto(struct sw *w, size_t end) {
    if (end > w->hashed && !w->failed) {
        (void)XXH3_64bits_update(w->hash, w->buf + w->hashed, end - w->hashed);
        w->hashed = end;
    }
}

/* The image mode's slow path: hash what is complete, grow the mapping if needed. */
static void sw_grow_image(struct sw *w, size_t n) {
    TQ_ASSERT(w->map_bytes > 0 && w->hash != NULL);
    sw_hash_upto(w, w->len);
    if (w->len + n > w->map_bytes) {
        size_t want = w->map_bytes;
        while (want < w->len + n)
            want *= 2;
        void *p = mremap(w->buf, w->map_bytes, want, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) {
            /* Out of address space or memory: the serialisation is lost; it goes on writing
             * over the bytes after rewind_to (nothing is read from them) and reports the
             * failure at the end. A single field larger than the mapping is a bug. */
            TQ_ASSERT(w->rewind_to + n <= w->map_bytes);
            w->failed = true;
            w->len = w->rewind_to;
        } else {
            w->buf = p;
            w->map_bytes = want;
        }
    }
    size_t soft = w->len + n + HASH_STEP;
    w->cap = soft < w->map_bytes ? soft : w->map_bytes;
}

static uint8_t *sw_reserve(struct sw *w, size_t n) {
    if (w->len + n > w->cap) {
        if (w->map_bytes > 0) {
            sw_grow_image(w, n);
        } else {
            size_t cap = w->cap == 0 ? 64 * 1024 : w->cap;
            while (cap < w->len + n)
                cap *= 2;
            w->buf = tq_xrealloc(w->buf, w->cap, cap);
            w->cap = cap;
        }
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}
static void sw_bytes(struct sw *w, const void *p, size_t n) {
    uint8_t *d = sw_reserve(w, n);
    if (n > 0) memcpy(d, p, n);
}
static void sw_u8(struct sw *w, uint64_t v) {
    *sw_reserve(w, 1) = (uint8_t)v;
}
static void sw_u32(struct sw *w, uint64_t v) {
    uint8_t *b = sw_reserve(w, 4);
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}
static void sw_u64(struct sw *w, uint64_t v) {
    uint8_t *b = sw_reserve(w, 8);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}
static void sw_str(struct sw *w, struct tq_str s) {
    sw_u32(w, s.len);
    sw_bytes(w, s.ptr, s.len);
}

static void write_calendar(struct sw *w, const struct tq_calendar *c) {
    sw_str(w, (struct tq_str){c->tz_name, (uint32_t)strnlen(c->tz_name, sizeof(c->tz_name))});
    sw_u32(w, (uint32_t)c->base_offset_s);
    sw_u32(w, c->tz_transition_count);
    for (uint32_t i = 0; i < c->tz_transition_count; i++) {
        sw_u64(w, (uint64_t)c->tz_transitions[i].at_s);
        sw_u32(w, (uint32_t)c->tz_transitions[i].offset_s);
    }
    for (int d = 0; d < 7; d++) {
        sw_u8(w, c->interval_count[d]);
        for (uint32_t i = 0; i < c->interval_count[d]; i++) {
            sw_u32(w, c->intervals[d][i].start_minute);
            sw_u32(w, c->intervals[d][i].end_minute);
        }
    }
    sw_u32(w, c->holiday_count);
    for (uint32_t i = 0; i < c->holiday_count; i++)
        sw_u32(w, (uint32_t)c->holidays[i]);
}

static void write_hist(struct sw *w, const struct tq_hist *h) {
    sw_u64(w, h->count);
    for (uint32_t b = 0; b < TQ_HIST_BUCKETS; b++)
        sw_u32(w, h->buckets[b]);
}

static void write_tenant(const struct tq_state *s, struct sw *w, const struct tq_tenant *tn) {
    sw_str(w, tn->name);
    sw_u64(w, tn->auto_close_ms);
    sw_u32(w, tn->warn_permille);
    sw_u32(w, tn->attempts_max);
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
        sw_u64(w, tn->reply_window_ms[i]);
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
        sw_u32(w, tn->default_queue[i]);
    sw_u32(w, tn->ticket_number_next);
    sw_u32(w, tn->policy_count);
    sw_u32(w, tn->policy_first);
    sw_u32(w, tn->policy_current);
    for (uint32_t i = 0; i < tn->policy_count; i++) {
        const struct tq_policy *p = &tn->policies[i];
        sw_str(w, p->name);
        sw_u32(w, p->queue);
        sw_u32(w, (uint32_t)p->channel);
        sw_u32(w, p->tag);
        sw_u8(w, p->business_hours);
        for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
            for (int q = 0; q < TQ_PRIORITY_COUNT; q++)
                sw_u64(w, p->target_ms[m][q]);
        }
    }
    sw_u8(w, tn->calendar != NULL);
    if (tn->calendar != NULL) write_calendar(w, tn->calendar);
    sw_u32(w, tn->queue_n);
    for (uint32_t i = 0; i < tn->queue_n; i++)
        sw_u32(w, tn->queue_ids[i]);
    sw_u32(w, tn->agent_n);
    for (uint32_t i = 0; i < tn->agent_n; i++)
        sw_u32(w, tn->agent_ids[i]);
    sw_u32(w, tn->consumer_n);
    for (uint32_t i = 0; i < tn->consumer_n; i++) {
        sw_str(w, tn->consumers[i].name);
        sw_u64(w, tn->consumers[i].lsn);
    }
    for (int i = 0; i < TQ_STATUS_COUNT; i++)
        sw_u64(w, tn->by_status[i]);
    sw_u64(w, tn->ticket_count);
    sw_u64(w, tn->message_count);
    sw_u64(w, tn->customer_count);
    sw_u64(w, tn->sla_breaches);
    sw_u64(w, tn->sla_warnings);
    sw_u64(w, tn->outbox_pending);
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
        sw_u64(w, tn->by_channel[i]);
    write_hist(w, &tn->first_response);
    write_hist(w, &tn->resolution);
    for (uint32_t i = 0; i < TQ_HOURLY_SLOTS; i++) {
        sw_u64(w, tn->hour_of_slot[i]);
        for (int c = 0; c < TQ_CHANNEL_COUNT; c++)
            sw_u32(w, tn->hourly[i][c]);
    }
    for (int ch = 0; ch < TQ_CHANNEL_COUNT; ch++) {
        sw_u32(w, tn->ob_avail[ch].count);
        for (uint32_t e = tn->ob_avail[ch].head; e != 0; e = st_obentry(s, e)->next) {
            sw_u32(w, st_obentry(s, e)->message);
        }
        sw_u32(w, tn->ob_leased[ch].count);
        for (uint32_t e = tn->ob_leased[ch].head; e != 0; e = st_obentry(s, e)->next) {
            sw_u32(w, st_obentry(s, e)->message);
            sw_u64(w, st_obentry(s, e)->lease_until_ms);
        }
    }
}

static void write_body(const struct tq_state *s, struct sw *w, bool with_lsn) {
    if (with_lsn) sw_u64(w, s->lsn);
    const struct tq_slab *slabs[] = {&s->interns,    &s->tenants, &s->tokens,
                                     &s->queues,     &s->agents,  &s->customers,
                                     &s->identities, &s->tickets, &s->messages};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(slabs); i++)
        sw_u32(w, tq_slab_count(slabs[i]));
    for (uint32_t i = 1; i < s->interns.next_id; i++)
        sw_str(w, st_intern(s, i)->str);
    for (uint32_t i = 1; i < s->tenants.next_id; i++)
        write_tenant(s, w, st_tenant(s, i));
    for (uint32_t i = 1; i < s->tokens.next_id; i++) {
        const struct tq_token *t = st_token(s, i);
        sw_bytes(w, t->hash, 32);
        sw_str(w, t->name);
        sw_u32(w, t->tenant);
        sw_u32(w, t->agent);
        sw_u8(w, t->role);
        sw_u8(w, t->revoked);
    }
    for (uint32_t i = 1; i < s->queues.next_id; i++) {
        const struct tq_queue *q = st_queue(s, i);
        sw_str(w, q->name);
        sw_u64(w, q->timeout_ms);
        sw_u32(w, q->tenant);
        sw_u8(w, q->auto_assign);
    }
    for (uint32_t i = 1; i < s->agents.next_id; i++) {
        const struct tq_agent *a = st_agent(s, i);
        sw_str(w, a->name);
        sw_u64(w, a->last_assigned_ms);
        sw_u32(w, a->tenant);
        sw_u32(w, a->capacity[0]);
        sw_u32(w, a->capacity[1]);
        sw_u8(w, a->presence);
    }
    for (uint32_t i = 1; i < s->customers.next_id; i++) {
        const struct tq_customer *c = st_customer(s, i);
        sw_str(w, c->name);
        sw_str(w, c->language);
        sw_u32(w, c->tenant);
        sw_u32(w, c->merged_into);
        sw_u8(w, c->erased);
    }
    for (uint32_t i = 1; i < s->identities.next_id; i++) {
        const struct tq_identity *x = st_identity(s, i);
        sw_u64(w, x->hash);
        sw_str(w, (struct tq_str){ident_ext(x), x->ext_len});
        sw_u32(w, x->tenant);
        sw_u32(w, x->customer);
        sw_u8(w, x->channel);
    }
    for (uint32_t i = 1; i < s->tickets.next_id; i++) {
        const struct tq_ticket *t = st_ticket(s, i);
        const uint64_t times[] = {t->created_ms,
                                  t->updated_ms,
                                  t->first_response_ms,
                                  t->solved_ms,
                                  tk_wake_at(t),
                                  t->routing_ms,
                                  t->unanswered_ms,
                                  t->wait.deadline_ms,
                                  t->wait.mark_ms,
                                  t->wait.elapsed_ms,
                                  t->work.deadline_ms,
                                  t->work.mark_ms,
                                  t->work.elapsed_ms,
                                  t->first_reply_deadline_ms,
                                  t->next_reply_deadline_ms,
                                  t->window_deadline_ms};
        for (size_t k = 0; k < TQ_ARRAY_COUNT(times); k++)
            sw_u64(w, times[k]);
        sw_str(w, (struct tq_str){t->subject != NULL ? t->subject : "", t->subject_len});
        uint32_t tc = t->extras != NULL ? t->extras->tag_count : 0;
        uint32_t fc = t->extras != NULL ? t->extras->field_count : 0;
        sw_u32(w, tc);
        for (uint32_t k = 0; k < tc; k++)
            sw_u32(w, extras_tags(t->extras)[k]);
        sw_u32(w, fc);
        for (uint32_t k = 0; k < fc; k++) {
            const struct tq_tag_field *f = &t->extras->fields[k];
            sw_u32(w, f->key);
            sw_u8(w, f->type);
            sw_u64(w, (uint64_t)f->int_value);
            sw_str(w, f->string_value);
        }
        const uint32_t ids[] = {t->tenant,   t->number,         t->customer,        t->queue,
                                t->assignee, tk_merged_into(t), tk_follow_up_of(t), t->policy};
        for (size_t k = 0; k < TQ_ARRAY_COUNT(ids); k++)
            sw_u32(w, ids[k]);
        sw_u8(w, t->status);
        sw_u8(w, t->priority);
        sw_u8(w, t->origin);
        for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++)
            sw_u8(w, t->sla_state[m]);
        sw_u8(w, t->sla_warned);
    }
    for (uint32_t i = 1; i < s->messages.next_id; i++) {
        const struct tq_message *m = st_message(s, i);
        sw_u64(w, m->ext_hash);
        /* a queued outbound message's attempts are counted in its outbox entry */
        uint64_t packed = m->packed;
        if (msg_dir(m) == TQ_DIRECTION_OUTBOUND && msg_delivery(m) == TQ_DELIVERY_QUEUED) {
            packed = msg_with_attempts(packed, tq_st_message_attempts(s, i));
        }
        sw_u64(w, packed);
        sw_u32(w, m->ticket);
    }
}

void tq_state_digest(const struct tq_state *s, uint8_t digest_out[16]) {
    struct sw w = {0};
    write_body(s, &w, false);
    XXH128_hash_t h = XXH3_128bits(w.buf, w.len);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    memcpy(digest_out, canon.digest, 16);
    tq_free(w.buf, w.cap);
}

/* Fills the state header (the first SNAP_HEADER_BYTES of blob) for a body of body_len bytes
 * whose XXH3-64 is sum. */
static void put_state_header(uint8_t *blob, uint64_t body_len, uint64_t sum) {
    memset(blob, 0, SNAP_HEADER_BYTES);
    memcpy(blob, SNAP_MAGIC, 8);
    for (int i = 0; i < 4; i++)
        blob[8 + i] = (uint8_t)(SNAP_VERSION >> (8 * i));
    for (int i = 0; i < 8; i++)
        blob[16 + i] = (uint8_t)(body_len >> (8 * i));
    for (int i = 0; i < 8; i++)
        blob[24 + i] = (uint8_t)(sum >> (8 * i));
}

enum tq_err tq_state_serialize(const struct tq_state *s, void **blob_out, size_t *len_out,
                               struct tq_error *error) {
    TQ_ASSERT(blob_out != NULL && len_out != NULL);
    struct sw w = {0};
    uint8_t header[SNAP_HEADER_BYTES] = {0};
    sw_bytes(&w, header, sizeof(header));
    write_body(s, &w, true);
    uint64_t body_len = w.len - SNAP_HEADER_BYTES;
    put_state_header(w.buf, body_len, XXH3_64bits(w.buf + SNAP_HEADER_BYTES, body_len));
    /* Hand out an exact-size blob so the caller's tq_free(blob, len) matches. */
    void *blob = tq_alloc(w.len);
    if (blob == NULL) {
        tq_free(w.buf, w.cap);
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "snapshot: out of memory (%zu)",
                            w.len);
    }
    memcpy(blob, w.buf, w.len);
    *blob_out = blob;
    *len_out = w.len;
    tq_free(w.buf, w.cap);
    return TQ_OK;
}

/* The first mapping of an image: grown by doubling from here (address space only; pages are
 * allocated as they are written). */
#define IMAGE_MAP_BYTES_MIN (4u << 20)

enum tq_err tq_state_serialize_image(const struct tq_state *s, size_t head_bytes,
                                     struct tq_state_image *image_out, struct tq_error *error) {
    TQ_ASSERT(image_out != NULL);
    TQ_ASSERT(head_bytes <= IMAGE_MAP_BYTES_MIN / 2);
    memset(image_out, 0, sizeof(*image_out));
    void *map =
        mmap(NULL, IMAGE_MAP_BYTES_MIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "snapshot: mmap %u bytes: %s",
                            IMAGE_MAP_BYTES_MIN, strerror(errno));
    }
    XXH3_state_t hash;
    (void)XXH3_64bits_reset(&hash);
    const size_t body_at = head_bytes + SNAP_HEADER_BYTES;
    struct sw w = {
        .buf = map,
        .len = body_at, /* the caller's head and the state header are filled in at the end */
        .cap = body_at,
        .map_bytes = IMAGE_MAP_BYTES_MIN,
        .hashed = body_at,
        .hash = &hash,
        .rewind_to = body_at,
    };
    write_body(s, &w, true);
    sw_hash_upto(&w, w.len);
    if (w.failed) {
        munmap(w.buf, w.map_bytes);
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED,
                            "snapshot: out of memory growing the image past %zu bytes",
                            w.map_bytes);
    }
    TQ_ASSERT(w.hashed == w.len);
    uint64_t body_len = w.len - body_at;
    put_state_header(w.buf + head_bytes, body_len, XXH3_64bits_digest(&hash));
    image_out->map = w.buf;
    image_out->map_bytes = w.map_bytes;
    image_out->head_bytes = head_bytes;
    image_out->blob_bytes = w.len - head_bytes;
    return TQ_OK;
}

void tq_state_image_free(struct tq_state_image *image) {
    if (image->map != NULL) munmap(image->map, image->map_bytes);
    memset(image, 0, sizeof(*image));
}

/* ---- reader ------------------------------------------------------------------------------- */

struct sr {
    const uint8_t *p;
    size_t len, off;
    const char *bad;  /* first failure, NULL while fine */
    uint32_t version; /* blob version (1 or 2) */
};

static void sr_fail(struct sr *r, const char *what) {
    if (r->bad == NULL) r->bad = what;
}
static uint64_t sr_le(struct sr *r, size_t n, const char *what) {
    if (r->bad != NULL) return 0;
    if (n > r->len - r->off) {
        sr_fail(r, what);
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[r->off + i] << (8 * i);
    r->off += n;
    return v;
}
static uint8_t sr_u8(struct sr *r, const char *w) {
    return (uint8_t)sr_le(r, 1, w);
}
static uint32_t sr_u32(struct sr *r, const char *w) {
    return (uint32_t)sr_le(r, 4, w);
}
static uint64_t sr_u64(struct sr *r, const char *w) {
    return sr_le(r, 8, w);
}
static uint32_t sr_count(struct sr *r, uint32_t max, size_t min_bytes, const char *what) {
    uint32_t n = sr_u32(r, what);
    if (r->bad == NULL && (n > max || (size_t)n * min_bytes > r->len - r->off)) sr_fail(r, what);
    return r->bad != NULL ? 0 : n;
}
static struct tq_str sr_str(struct sr *r, struct tq_state *s, uint32_t max, const char *what) {
    uint32_t n = sr_u32(r, what);
    if (r->bad == NULL && (n > max || n > r->len - r->off)) sr_fail(r, what);
    if (r->bad != NULL) return (struct tq_str){"", 0};
    struct tq_str out = tq_st_strdup(s, (const char *)r->p + r->off, n);
    r->off += n;
    return out;
}
/* Like sr_str, but the bytes stay in the blob (valid while it is): for callers that store
 * them their own way. */
static struct tq_str sr_bytes(struct sr *r, uint32_t max, const char *what) {
    uint32_t n = sr_u32(r, what);
    if (r->bad == NULL && (n > max || n > r->len - r->off)) sr_fail(r, what);
    if (r->bad != NULL) return (struct tq_str){"", 0};
    struct tq_str out = {(const char *)r->p + r->off, n};
    r->off += n;
    return out;
}
/* An id reference that must be 0..count (allow_zero) or 1..count. */
static uint32_t sr_ref(struct sr *r, uint32_t count, bool allow_zero, const char *what) {
    uint32_t v = sr_u32(r, what);
    if (v > count || (v == 0 && !allow_zero)) sr_fail(r, what);
    return r->bad != NULL ? (allow_zero ? 0 : 1) : v;
}

#define STR_LIMIT (16u * 1024 * 1024)

struct counts {
    uint32_t interns, tenants, tokens, queues, agents, customers, identities, tickets, messages;
};

static void read_calendar(struct sr *r, struct tq_calendar *c) {
    memset(c, 0, sizeof(*c));
    uint32_t n = sr_count(r, TQ_CALENDAR_TZ_NAME_BYTES_MAX - 1, 1, "calendar name");
    if (r->bad == NULL) {
        memcpy(c->tz_name, r->p + r->off, n);
        r->off += n;
    }
    c->base_offset_s = (int32_t)sr_u32(r, "calendar base");
    c->tz_transition_count = sr_count(r, TQ_CALENDAR_TZ_TRANSITIONS_MAX, 12, "calendar tz");
    for (uint32_t i = 0; i < c->tz_transition_count; i++) {
        c->tz_transitions[i].at_s = (int64_t)sr_u64(r, "calendar tz");
        c->tz_transitions[i].offset_s = (int32_t)sr_u32(r, "calendar tz");
    }
    for (int d = 0; d < 7; d++) {
        uint8_t k = sr_u8(r, "calendar intervals");
        if (k > TQ_CALENDAR_INTERVALS_PER_DAY_MAX) {
            sr_fail(r, "calendar intervals");
            k = 0;
        }
        c->interval_count[d] = k;
        for (uint32_t i = 0; i < k; i++) {
            c->intervals[d][i].start_minute = (uint16_t)sr_u32(r, "calendar interval");
            c->intervals[d][i].end_minute = (uint16_t)sr_u32(r, "calendar interval");
        }
    }
    c->holiday_count = sr_count(r, TQ_CALENDAR_HOLIDAYS_MAX, 4, "calendar holidays");
    for (uint32_t i = 0; i < c->holiday_count; i++)
        c->holidays[i] = (int32_t)sr_u32(r, "holiday");
}

static void read_hist(struct sr *r, struct tq_hist *h) {
    h->count = sr_u64(r, "histogram");
    for (uint32_t b = 0; b < TQ_HIST_BUCKETS; b++)
        h->buckets[b] = sr_u32(r, "histogram");
}

static void read_tenant(struct sr *r, struct tq_state *s, uint32_t id, const struct counts *n) {
    struct tq_tenant *tn = st_tenant(s, id);
    tn->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "tenant name");
    tn->auto_close_ms = sr_u64(r, "auto_close");
    tn->warn_permille = sr_u32(r, "permille");
    tn->attempts_max = sr_u32(r, "attempts");
    if (tn->warn_permille > 1000 || tn->attempts_max > TQ_OUTBOX_ATTEMPTS_LIMIT)
        sr_fail(r, "settings");
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
        tn->reply_window_ms[i] = sr_u64(r, "window");
        if (tn->reply_window_ms[i] > TQ_SLA_TARGET_MS_MAX) sr_fail(r, "reply window");
    }
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++) {
        tn->default_queue[i] = sr_ref(r, n->queues, true, "default queue");
    }
    tn->ticket_number_next = sr_u32(r, "ticket number");
    uint32_t pc = sr_count(r, 1u << 24, 40, "policies");
    tn->policy_first = sr_u32(r, "policy first");
    tn->policy_current = sr_u32(r, "policy current");
    if ((uint64_t)tn->policy_first + tn->policy_current > pc) sr_fail(r, "policy range");
    if (pc > 0 && r->bad == NULL) {
        tn->policies = tq_xcalloc(pc, sizeof(struct tq_policy));
        tn->policy_cap = pc;
    }
    for (uint32_t i = 0; i < pc && r->bad == NULL; i++) {
        struct tq_policy *p = &tn->policies[i];
        p->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "policy name");
        p->queue = sr_ref(r, n->queues, true, "policy queue");
        p->channel = (int32_t)sr_u32(r, "policy channel");
        if (p->channel < -1 || p->channel >= TQ_CHANNEL_COUNT) sr_fail(r, "policy channel");
        p->tag = sr_ref(r, n->interns, true, "policy tag");
        p->business_hours = sr_u8(r, "policy hours") != 0;
        for (int m = 0; m < TQ_SLA_METRIC_COUNT - 1; m++) {
            for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
                p->target_ms[m][q] = sr_u64(r, "target");
                if (p->target_ms[m][q] > TQ_SLA_TARGET_MS_MAX) sr_fail(r, "policy target");
            }
        }
        tn->policy_count++;
    }
    if (sr_u8(r, "calendar") != 0 && r->bad == NULL) {
        tn->calendar = tq_xalloc(sizeof(*tn->calendar));
        read_calendar(r, tn->calendar);
    }
    uint32_t qn = sr_count(r, n->queues, 4, "queue ids");
    for (uint32_t i = 0; i < qn && r->bad == NULL; i++) {
        uint32_t q = sr_ref(r, n->queues, false, "queue id");
        if (tn->queue_n == tn->queue_cap) {
            tn->queue_ids = tq_xcalloc(qn, sizeof(uint32_t));
            tn->queue_cap = qn;
        }
        tn->queue_ids[tn->queue_n++] = q;
    }
    uint32_t an = sr_count(r, n->agents, 4, "agent ids");
    for (uint32_t i = 0; i < an && r->bad == NULL; i++) {
        uint32_t a = sr_ref(r, n->agents, false, "agent id");
        if (tn->agent_n == tn->agent_cap) {
            tn->agent_ids = tq_xcalloc(an, sizeof(uint32_t));
            tn->agent_cap = an;
        }
        tn->agent_ids[tn->agent_n++] = a;
    }
    uint32_t cn = sr_count(r, TQ_CONSUMER_NAMES_MAX, 12, "consumers");
    if (cn > 0 && r->bad == NULL) {
        tn->consumers = tq_xcalloc(cn, sizeof(struct tq_consumer));
        tn->consumer_cap = cn;
    }
    for (uint32_t i = 0; i < cn && r->bad == NULL; i++) {
        tn->consumers[i].name = sr_str(r, s, TQ_NAME_BYTES_MAX, "consumer");
        tn->consumers[i].lsn = sr_u64(r, "consumer lsn");
        tn->consumer_n++;
    }
    for (int i = 0; i < TQ_STATUS_COUNT; i++)
        tn->by_status[i] = sr_u64(r, "stats");
    tn->ticket_count = sr_u64(r, "stats");
    tn->message_count = sr_u64(r, "stats");
    tn->customer_count = sr_u64(r, "stats");
    tn->sla_breaches = sr_u64(r, "stats");
    tn->sla_warnings = sr_u64(r, "stats");
    uint64_t pending = sr_u64(r, "stats");
    for (int i = 0; i < TQ_CHANNEL_COUNT; i++)
        tn->by_channel[i] = sr_u64(r, "stats");
    read_hist(r, &tn->first_response);
    read_hist(r, &tn->resolution);
    for (uint32_t i = 0; i < TQ_HOURLY_SLOTS; i++) {
        tn->hour_of_slot[i] = sr_u64(r, "hourly");
        for (int c = 0; c < TQ_CHANNEL_COUNT; c++)
            tn->hourly[i][c] = sr_u32(r, "hourly");
    }
    /* The outbox references messages, which are loaded later: remember the position. */
    (void)pending;
}

static void read_outbox(struct sr *r, struct tq_state *s, uint32_t tenant, uint32_t nmsg) {
    for (unsigned ch = 0; ch < TQ_CHANNEL_COUNT && r->bad == NULL; ch++) {
        uint32_t na = sr_count(r, nmsg, 4, "outbox");
        for (uint32_t i = 0; i < na && r->bad == NULL; i++) {
            uint32_t m = sr_ref(r, nmsg, false, "outbox message");
            if (r->bad == NULL && tq_st_u32map_get(&s->ob_by_message, m) != 0) sr_fail(r, "dup");
            if (r->bad == NULL) tq_st_outbox_add(s, tenant, m, ch, 0);
        }
        uint32_t nl = sr_count(r, nmsg, 12, "outbox leased");
        for (uint32_t i = 0; i < nl && r->bad == NULL; i++) {
            uint32_t m = sr_ref(r, nmsg, false, "outbox message");
            uint64_t until = sr_u64(r, "lease");
            if (until == 0) sr_fail(r, "lease");
            if (r->bad == NULL && tq_st_u32map_get(&s->ob_by_message, m) != 0) sr_fail(r, "dup");
            if (r->bad == NULL) tq_st_outbox_add(s, tenant, m, ch, until);
        }
    }
}

static void read_entities(struct sr *r, struct tq_state *s, const struct counts *n,
                          size_t *outbox_off) {
    for (uint32_t i = 1; i <= n->interns && r->bad == NULL; i++) {
        uint32_t id = tq_st_slab_new(&s->interns);
        struct tq_intern *in = st_intern(s, id);
        in->str = sr_str(r, s, STR_LIMIT, "intern");
        in->hash = XXH3_64bits(in->str.ptr, in->str.len);
    }
    for (uint32_t i = 1; i <= n->tenants && r->bad == NULL; i++) {
        uint32_t id = tq_st_slab_new(&s->tenants);
        read_tenant(r, s, id, n);
        outbox_off[i] = r->off;
        /* skip the outbox lists for now; they are read again after the messages */
        for (unsigned ch = 0; ch < TQ_CHANNEL_COUNT && r->bad == NULL; ch++) {
            uint32_t na = sr_count(r, n->messages, 4, "outbox");
            r->off += (size_t)na * 4;
            uint32_t nl = sr_count(r, n->messages, 12, "outbox leased");
            r->off += (size_t)nl * 12;
        }
    }
    for (uint32_t i = 1; i <= n->tokens && r->bad == NULL; i++) {
        struct tq_token *t = st_token(s, tq_st_slab_new(&s->tokens));
        if (r->len - r->off < 32) sr_fail(r, "token hash");
        if (r->bad != NULL) break;
        memcpy(t->hash, r->p + r->off, 32);
        r->off += 32;
        t->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "token name");
        t->tenant = sr_ref(r, n->tenants, true, "token tenant");
        t->agent = sr_ref(r, n->agents, true, "token agent");
        t->role = sr_u8(r, "role");
        t->revoked = sr_u8(r, "revoked");
        if (t->role > TQ_ROLE_INTEGRATION || t->revoked > 1) sr_fail(r, "token");
    }
    for (uint32_t i = 1; i <= n->queues && r->bad == NULL; i++) {
        struct tq_queue *q = st_queue(s, tq_st_slab_new(&s->queues));
        q->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "queue name");
        q->timeout_ms = sr_u64(r, "timeout");
        q->tenant = sr_ref(r, n->tenants, false, "queue tenant");
        q->auto_assign = sr_u8(r, "auto_assign") != 0;
    }
    for (uint32_t i = 1; i <= n->agents && r->bad == NULL; i++) {
        struct tq_agent *a = st_agent(s, tq_st_slab_new(&s->agents));
        a->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "agent name");
        a->last_assigned_ms = sr_u64(r, "last assigned");
        a->tenant = sr_ref(r, n->tenants, false, "agent tenant");
        a->capacity[0] = sr_u32(r, "capacity");
        a->capacity[1] = sr_u32(r, "capacity");
        a->presence = sr_u8(r, "presence");
        if (a->presence > TQ_PRESENCE_ONLINE) sr_fail(r, "presence");
    }
    for (uint32_t i = 1; i <= n->customers && r->bad == NULL; i++) {
        struct tq_customer *c = st_customer(s, tq_st_slab_new(&s->customers));
        c->name = sr_str(r, s, TQ_NAME_BYTES_MAX, "customer name");
        c->language = sr_str(r, s, TQ_NAME_BYTES_MAX, "language");
        c->tenant = sr_ref(r, n->tenants, false, "customer tenant");
        c->merged_into = sr_ref(r, n->customers, true, "customer merge");
        if (r->version >= 2) c->erased = sr_u8(r, "customer erased");
        if (c->erased > 1 || (c->erased && (c->name.len != 0 || c->language.len != 0))) {
            sr_fail(r, "customer erased");
        }
    }
    for (uint32_t i = 1; i <= n->identities && r->bad == NULL; i++) {
        struct tq_identity *x = st_identity(s, tq_st_slab_new(&s->identities));
        x->hash = sr_u64(r, "identity hash");
        struct tq_str ext = sr_bytes(r, TQ_EXTERNAL_ID_BYTES_MAX, "identity");
        if (ext.len > 0) tq_st_identity_set_ext(s, x, ext.ptr, ext.len); /* else erased */
        x->tenant = sr_ref(r, n->tenants, false, "identity tenant");
        x->customer = sr_ref(r, n->customers, false, "identity customer");
        x->channel = sr_u8(r, "identity channel");
        if (x->channel >= TQ_CHANNEL_COUNT) sr_fail(r, "identity channel");
        if (x->ext_len == 0 && x->hash != 0) sr_fail(r, "erased identity");
    }
    for (uint32_t i = 1; i <= n->tickets && r->bad == NULL; i++) {
        uint32_t tid = tq_st_slab_new(&s->tickets);
        tq_st_tkidx_new(s, tid);
        struct tq_ticket *t = st_ticket(s, tid);
        uint64_t wake_at = 0;
        uint64_t *times[] = {&t->created_ms,
                             &t->updated_ms,
                             &t->first_response_ms,
                             &t->solved_ms,
                             &wake_at,
                             &t->routing_ms,
                             &t->unanswered_ms,
                             &t->wait.deadline_ms,
                             &t->wait.mark_ms,
                             &t->wait.elapsed_ms,
                             &t->work.deadline_ms,
                             &t->work.mark_ms,
                             &t->work.elapsed_ms,
                             &t->first_reply_deadline_ms,
                             &t->next_reply_deadline_ms,
                             &t->window_deadline_ms};
        for (size_t k = 0; k < TQ_ARRAY_COUNT(times); k++)
            *times[k] = sr_u64(r, "ticket time");
        struct tq_str subj = sr_str(r, s, TQ_NAME_BYTES_MAX, "subject");
        t->subject = subj.ptr;
        t->subject_len = (uint16_t)subj.len;
        uint32_t tc = sr_count(r, TQ_TAGS_PER_TICKET_MAX, 4, "tags");
        uint32_t tags[TQ_TAGS_PER_TICKET_MAX];
        for (uint32_t k = 0; k < tc; k++)
            tags[k] = sr_ref(r, n->interns, false, "tag");
        uint32_t fc = sr_count(r, TQ_CUSTOM_FIELDS_PER_TICKET_MAX, 17, "fields");
        if (r->bad != NULL) break;
        if (tc + fc > 0) {
            t->extras = tq_xalloc(extras_bytes(tc, fc));
            t->extras->wake_at_ms = 0;
            t->extras->merged_into = t->extras->follow_up_of = 0;
            t->extras->tag_count = tc;
            t->extras->field_count = fc;
            memset(t->extras->fields, 0, fc * sizeof(struct tq_tag_field));
            memcpy(extras_tags(t->extras), tags, tc * sizeof(uint32_t));
            for (uint32_t k = 0; k < fc; k++) {
                struct tq_tag_field *f = &t->extras->fields[k];
                f->key = sr_ref(r, n->interns, false, "field key");
                f->type = sr_u8(r, "field type");
                if (f->type > TQ_FIELD_BOOL) sr_fail(r, "field type");
                f->int_value = (int64_t)sr_u64(r, "field int");
                f->string_value = sr_str(r, s, STR_LIMIT, "field string");
            }
        }
        t->tenant = sr_ref(r, n->tenants, false, "ticket tenant");
        t->number = sr_u32(r, "ticket number");
        t->customer = sr_ref(r, n->customers, false, "ticket customer");
        t->queue = sr_ref(r, n->queues, false, "ticket queue");
        t->assignee = sr_ref(r, n->agents, true, "ticket assignee");
        tq_st_set_merged_into(t, sr_ref(r, n->tickets, true, "ticket merge"));
        tq_st_set_follow_up_of(t, sr_ref(r, n->tickets, true, "ticket follow-up"));
        tq_st_set_wake_at(t, wake_at);
        t->policy = sr_u32(r, "ticket policy");
        if (r->bad == NULL && t->policy > st_tenant(s, t->tenant)->policy_count)
            sr_fail(r, "policy");
        t->status = sr_u8(r, "status");
        t->priority = sr_u8(r, "priority");
        t->origin = sr_u8(r, "origin");
        if (t->status >= TQ_STATUS_COUNT || t->priority >= TQ_PRIORITY_COUNT ||
            t->origin >= TQ_CHANNEL_COUNT) {
            sr_fail(r, "ticket enums");
        }
        for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
            t->sla_state[m] = sr_u8(r, "sla state");
            if (t->sla_state[m] > TQ_SLA_BREACHED) sr_fail(r, "sla state");
        }
        t->sla_warned = sr_u8(r, "sla warned");
    }
    for (uint32_t i = 1; i <= n->messages && r->bad == NULL; i++) {
        struct tq_message *m = st_message(s, tq_st_slab_new(&s->messages));
        m->ext_hash = sr_u64(r, "message hash");
        m->packed = sr_u64(r, "message");
        m->ticket = sr_ref(r, n->tickets, false, "message ticket");
        if (msg_dir(m) > TQ_DIRECTION_NOTE || msg_chan(m) >= TQ_CHANNEL_COUNT ||
            msg_author(m) > TQ_AUTHOR_AUTOMATION || msg_delivery(m) > TQ_DELIVERY_FAILED) {
            sr_fail(r, "message enums");
        }
    }
}

/* Cross-entity references the rebuild relies on: each must stay inside its tenant. */
static void check_tenancy(struct sr *r, const struct tq_state *s) {
    for (uint32_t i = 1; i < s->tickets.next_id && r->bad == NULL; i++) {
        const struct tq_ticket *t = st_ticket(s, i);
        if (st_customer(s, t->customer)->tenant != t->tenant ||
            st_queue(s, t->queue)->tenant != t->tenant ||
            (t->assignee != 0 && st_agent(s, t->assignee)->tenant != t->tenant)) {
            sr_fail(r, "ticket crosses tenants");
        }
    }
    for (uint32_t i = 1; i < s->identities.next_id && r->bad == NULL; i++) {
        const struct tq_identity *x = st_identity(s, i);
        if (st_customer(s, x->customer)->tenant != x->tenant) sr_fail(r, "identity tenant");
        /* live identities belong to live customers, erased ones to erased customers */
        if ((x->ext_len > 0) == (st_customer(s, x->customer)->erased != 0)) {
            sr_fail(r, "erased identity");
        }
    }
}

enum tq_err tq_state_deserialize(const void *blob, size_t len,
                                 const struct tq_state_options *options,
                                 struct tq_state **state_out, struct tq_error *error) {
    TQ_ASSERT(state_out != NULL);
    const uint8_t *p = blob;
    if (blob == NULL || len < SNAP_HEADER_BYTES || memcmp(p, SNAP_MAGIC, 8) != 0) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "snapshot: bad magic or short (%zu bytes)", len);
    }
    uint64_t version = 0, body_len = 0, sum = 0;
    for (int i = 0; i < 4; i++)
        version |= (uint64_t)p[8 + i] << (8 * i);
    for (int i = 0; i < 8; i++)
        body_len |= (uint64_t)p[16 + i] << (8 * i);
    for (int i = 0; i < 8; i++)
        sum |= (uint64_t)p[24 + i] << (8 * i);
    if (version != SNAP_VERSION && version != 1) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "snapshot: version %" PRIu64, version);
    }
    if (body_len != len - SNAP_HEADER_BYTES) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "snapshot: body length %" PRIu64 " of %zu",
                            body_len, len);
    }
    if (XXH3_64bits(p + SNAP_HEADER_BYTES, body_len) != sum) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "snapshot: checksum mismatch");
    }
    struct sr r = {p + SNAP_HEADER_BYTES, body_len, 0, NULL, (uint32_t)version};
    struct tq_state *s = tq_st_alloc(options);
    s->lsn = sr_u64(&r, "lsn");
    struct counts n;
    uint32_t *fields[] = {&n.interns,   &n.tenants,    &n.tokens,  &n.queues,  &n.agents,
                          &n.customers, &n.identities, &n.tickets, &n.messages};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(fields); i++) {
        *fields[i] = sr_u32(&r, "count");
        if (*fields[i] > TQ_ID_MAX || *fields[i] > body_len) sr_fail(&r, "count");
    }
    if (n.messages > TQ_MESSAGES_MAX) sr_fail(&r, "message count");
    if (n.identities > TQ_IDENTITIES_MAX) sr_fail(&r, "identity count");
    size_t *outbox_off = NULL;
    if (r.bad == NULL) {
        outbox_off = tq_xcalloc((size_t)n.tenants + 1, sizeof(size_t));
        read_entities(&r, s, &n, outbox_off);
    }
    if (r.bad == NULL && r.off != r.len) sr_fail(&r, "trailing bytes");
    if (r.bad == NULL) check_tenancy(&r, s);
    if (r.bad == NULL) {
        size_t end = r.off;
        for (uint32_t t = 1; t <= n.tenants && r.bad == NULL; t++) {
            r.off = outbox_off[t];
            read_outbox(&r, s, t, n.messages);
        }
        r.off = end;
        for (uint32_t e = 1; e < s->obentries.next_id && r.bad == NULL; e++) {
            const struct tq_obentry *x = st_obentry(s, e);
            if (st_ticket(s, st_message(s, x->message)->ticket)->tenant != x->tenant) {
                sr_fail(&r, "outbox tenant");
            }
        }
    }
    if (outbox_off != NULL) tq_free(outbox_off, ((size_t)n.tenants + 1) * sizeof(size_t));
    if (r.bad != NULL) {
        tq_state_free(s);
        return tq_error_set(error, TQ_ERR_CORRUPT, "snapshot: bad %s at body offset %zu", r.bad,
                            r.off);
    }
    tq_st_rebuild_indices(s);
    *state_out = s;
    return TQ_OK;
}
