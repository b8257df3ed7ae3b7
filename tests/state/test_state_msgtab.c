/* tests/state/test_state_msgtab.c: the message idempotency table's incremental growth.
 *
 * Goal: a duplicate external id is recognised (result `duplicate`, the first message's ids)
 * before, during and after every growth of the table (struct tq_msgtab, state_internal.h),
 * whichever of the two tables a key is in while a copy is in progress: only the old one
 * (message ids old_next .. old_end - 1), both (below old_next) or only the new one (added
 * since the growth); a snapshot taken mid-copy loads into a state that gives the same
 * answers and evolves identically; tq_state_reserve_messages mid-copy finishes the copy.
 * Method: white box (it includes state_internal.h to see the copy's cursor, so that every
 * "during" check provably ran while keys were in the old table only). 4,000 keyed messages
 * from 50 senders, every fourth followed by a message without a key (so message ids and key
 * numbers part ways, and the copy skips unkeyed ids); the table starts at 1,024 slots and
 * grows five times. Commands go straight to tq_state_apply (the fixture's per-command
 * invariant scan would make the re-lookups quadratic); invariants are checked at the end.
 */
#include "state_fixture.h"
#include "state_internal.h"
#include "tq_assert.h"

#include <stdio.h>
#include <sys/mman.h>

enum { KEYS = 4000, SENDERS = 50 };

struct run {
    struct fx f;
    uint64_t tn, q;
    uint64_t mid[KEYS], tid[KEYS]; /* the first message of key k and its ticket */
};

static void ingest(struct fx *f, struct tq_state *s, uint64_t tn, uint64_t q, uint32_t k,
                   bool keyed) {
    char from[32], key[32];
    snprintf(from, sizeof(from), "c%u@example.com", k % SENDERS);
    snprintf(key, sizeof(key), "m-%u", k);
    struct tq_cmd c = fx_ingest_cmd(tn, TQ_CHANNEL_EMAIL, from, keyed ? key : NULL, q);
    c.now_ms = f->now;
    TQ_CHECK_OK(tq_state_apply(s, tq_state_lsn(s) + 1, &c, &f->res, NULL, &f->err), &f->err);
}

/* Re-sends keys 0 .. n - 1 to s: each must be a duplicate with the first message's ids (a
 * duplicate adds nothing, so the lookups do not move a copy on). */
static void check_keys(struct run *r, struct tq_state *s, uint32_t n) {
    for (uint32_t k = 0; k < n; k++) {
        ingest(&r->f, s, r->tn, r->q, k, true);
        if (!r->f.res.duplicate) fprintf(stderr, "key %u of %u not found\n", k, n);
        TQ_CHECK(r->f.res.duplicate);
        TQ_CHECK_UEQ(r->f.res.message_id, r->mid[k]);
        TQ_CHECK_UEQ(r->f.res.ticket_id, r->tid[k]);
    }
}

/* During a copy: counts the keys below n by where they are, and checks each part is there. */
static void check_parts(const struct run *r, uint32_t n) {
    const struct tq_msgtab *t = &r->f.s->msg_index;
    TQ_CHECK(t->old != NULL);
    uint32_t both = 0, old_only = 0, new_only = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (r->mid[k] < t->old_next) {
            both++;
        } else if (r->mid[k] < t->old_end) {
            old_only++;
        } else {
            new_only++;
        }
    }
    TQ_CHECK(both > 0);
    TQ_CHECK(old_only > 0);
    TQ_CHECK(new_only > 0);
}

/* A snapshot taken now (mid-copy) loads into a state with the same answers; both then take
 * the same new keys and the same duplicates, and end with equal digests. */
static void check_snapshot_mid_copy(struct run *r, uint32_t n) {
    TQ_CHECK(r->f.s->msg_index.old != NULL);
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(r->f.s, &blob, &len, &r->f.err), &r->f.err);
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &r->f.err), &r->f.err);
    tq_free(blob, len);
    TQ_CHECK(l->msg_index.old == NULL); /* rebuilt in one go, sized for what it holds */
    uint8_t d1[16], d2[16];
    tq_state_digest(r->f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    check_keys(r, l, n);
    check_keys(r, r->f.s, n);               /* the same records (a duplicate takes an LSN too) */
    for (uint32_t k = n; k < n + 40; k++) { /* new keys: added to both, not duplicates */
        ingest(&r->f, r->f.s, r->tn, r->q, k, true);
        TQ_CHECK(!r->f.res.duplicate);
        uint64_t m = r->f.res.message_id;
        ingest(&r->f, l, r->tn, r->q, k, true);
        TQ_CHECK(!r->f.res.duplicate);
        TQ_CHECK_UEQ(r->f.res.message_id, m);
    }
    for (uint32_t k = 0; k < n + 40; k += 7) { /* and old ones: duplicates in both */
        ingest(&r->f, r->f.s, r->tn, r->q, k, true);
        TQ_CHECK(r->f.res.duplicate);
        uint64_t m = r->f.res.message_id;
        ingest(&r->f, l, r->tn, r->q, k, true);
        TQ_CHECK(r->f.res.duplicate);
        TQ_CHECK_UEQ(r->f.res.message_id, m);
    }
    tq_state_digest(r->f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    TQ_CHECK(tq_state_check_invariants(l, &r->f.err));
    tq_state_free(l);
}

static void test_growth_with_lookups(void) {
    static struct run r;
    fx_init(&r.f);
    r.tn = fx_tenant(&r.f, "shop");
    r.q = fx_queue(&r.f, r.tn, "q", false, 0);
    const struct tq_msgtab *t = &r.f.s->msg_index;
    TQ_CHECK_UEQ(t->cap, 1024);
    uint32_t growths = 0, mid_copy_checks = 0, snapshots = 0;
    uint32_t copy_start = 0; /* the key whose insert started the copy in progress */
    bool copying = false;
    for (uint32_t k = 0; k < KEYS; k++) {
        uint64_t cap_before = t->cap;
        ingest(&r.f, r.f.s, r.tn, r.q, k, true);
        TQ_CHECK(!r.f.res.duplicate);
        r.mid[k] = r.f.res.message_id;
        r.tid[k] = r.f.res.ticket_id;
        if (k % 4 == 3) ingest(&r.f, r.f.s, r.tn, r.q, k, false); /* an unkeyed message */
        TQ_CHECK_UEQ(t->count, k + 1);
        TQ_CHECK(t->count * 4 <= t->cap * 3);
        if (t->cap != cap_before) { /* a growth started with this insert */
            TQ_CHECK(!copying);     /* the previous copy ended before it */
            TQ_CHECK_UEQ(t->cap, cap_before + cap_before / 2);
            TQ_CHECK(t->old != NULL);
            TQ_CHECK_UEQ(t->old_cap, cap_before);
            growths++;
            copying = true;
            copy_start = k;
            check_keys(&r, r.f.s, k); /* just after the growth: nearly all in old only */
            check_keys(&r, r.f.s, k + 1);
            mid_copy_checks++;
        } else if (copying && t->old == NULL) { /* this insert ended the copy */
            copying = false;
            /* within a quarter of the inserts the new table takes before it grows again */
            TQ_CHECK(k - copy_start + 1 <= (t->cap * 3 / 4 - copy_start) / 4);
            check_keys(&r, r.f.s, k + 1);
        } else if (copying && k - copy_start == 40) { /* the middle of a copy */
            check_parts(&r, k + 1);
            check_keys(&r, r.f.s, k + 1);
            mid_copy_checks++;
            if (growths == 3) {
                check_snapshot_mid_copy(&r, k + 1);
                snapshots++;
                k += 40; /* the keys it added */
                TQ_CHECK_UEQ(t->count, k + 1);
                for (uint32_t j = k - 39; j <= k; j++) { /* record them (ids from a lookup) */
                    ingest(&r.f, r.f.s, r.tn, r.q, j, true);
                    r.mid[j] = r.f.res.message_id;
                    r.tid[j] = r.f.res.ticket_id;
                }
            }
        } else if (!copying && k % 500 == 0) {
            check_keys(&r, r.f.s, k + 1); /* between copies */
        }
        if (growths == 5 && copying && k - copy_start == 60) {
            /* the whole table wanted at once: the copy is finished first */
            tq_state_reserve_messages(r.f.s, 20000);
            TQ_CHECK(t->old == NULL);
            TQ_CHECK(t->count * 4 <= t->cap * 3);
            TQ_CHECK(t->cap >= (k + 1 + 20000) * 4 / 3);
            copying = false;
            check_keys(&r, r.f.s, k + 1);
        }
    }
    /* 1,024 slots grow at 768, 1,152, 1,728, 2,592 and 3,888 keys */
    TQ_CHECK_EQ(growths, 5);
    TQ_CHECK_EQ(mid_copy_checks, 10); /* at the start and in the middle of 5 copies */
    TQ_CHECK_EQ(snapshots, 1);
    check_keys(&r, r.f.s, KEYS);
    TQ_CHECK(tq_state_check_invariants(r.f.s, &r.f.err));
    fx_free(&r.f);
}

/* A state freed in the middle of a copy gives both tables back (ASan's leak check), and a copy
 * over keyed messages only (no ids to skip) answers as well. */
static void test_free_mid_copy(void) {
    static struct run r;
    fx_init(&r.f);
    r.tn = fx_tenant(&r.f, "shop");
    r.q = fx_queue(&r.f, r.tn, "q", false, 0);
    uint32_t k = 0;
    while (r.f.s->msg_index.old == NULL) {
        ingest(&r.f, r.f.s, r.tn, r.q, k, true);
        r.mid[k] = r.f.res.message_id;
        r.tid[k] = r.f.res.ticket_id;
        k++;
    }
    TQ_CHECK_UEQ(k, 769); /* 3/4 of 1,024 slots hold 768 keys */
    TQ_CHECK(r.f.s->msg_index.old != NULL);
    check_keys(&r, r.f.s, k);
    fx_free(&r.f);
}

/* ---- the release hook (tq_state_options.release) ---------------------------------------- */

/* What the hook was handed: ticketqd's helper unmaps these later; here they stay mapped but
 * PROT_NONE until the end, so any touch by the state after the hand-over faults. */
struct released {
    const struct tq_msgtab *t;
    void *p[4];
    size_t len[4];
    uint32_t count;
};

static void release_hook(void *ctx, void *addr, size_t len) {
    struct released *rel = ctx;
    TQ_CHECK(((uintptr_t)addr & ((2u << 20) - 1)) == 0);
    TQ_CHECK(len > 0 && len % (2u << 20) == 0);
    /* the old table of the copy that ends now, given back whole */
    TQ_CHECK(addr == rel->t->old);
    TQ_CHECK_UEQ(len,
                 (rel->t->old_cap * sizeof(uint32_t) + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1));
    TQ_CHECK_LT(rel->count, 4);
    rel->p[rel->count] = addr;
    rel->len[rel->count] = len;
    rel->count++;
    TQ_CHECK_EQ(mprotect(addr, len, PROT_NONE), 0);
}

/* Goal: with a release hook, the old table of a finished copy goes to the hook instead of
 * munmap inside apply (ticketqd unmaps it on its helper thread: a 46 MB munmap took ~0.3 ms
 * at 10 million messages), and the state never touches it again. Tables below 2 MiB come from
 * tq_alloc and are freed as before, so the first hand-over is the copy after the growth of
 * 672,603 slots (2.7 MB) at 504,453 keys. Keys from 50 senders (few customers, quick). After
 * the hand-over every key is still found, new keys go on, the invariants hold, and the bytes
 * the state counts come back to where they started once it and the ranges are freed (the
 * hand-over uncounted them once). */
static void test_release_hook(void) {
    static struct run r;
    static struct released rel;
    fx_init(&r.f);
    tq_state_free(r.f.s);
    uint64_t mapped0 = tq_state_bytes_mapped();
    r.f.s = tq_state_new(&(struct tq_state_options){.release = release_hook, .release_ctx = &rel});
    rel.t = &r.f.s->msg_index;
    r.tn = fx_tenant(&r.f, "shop");
    r.q = fx_queue(&r.f, r.tn, "q", false, 0);
    enum { KEYS_MAX = 700000 };
    static uint64_t mid[KEYS_MAX], tid[KEYS_MAX];
    uint32_t k = 0, released_at = 0;
    for (; k < KEYS_MAX && (rel.count == 0 || k < released_at + 1000); k++) {
        ingest(&r.f, r.f.s, r.tn, r.q, k, true);
        TQ_CHECK(!r.f.res.duplicate);
        mid[k] = r.f.res.message_id;
        tid[k] = r.f.res.ticket_id;
        if (rel.count == 1 && released_at == 0) released_at = k;
    }
    TQ_CHECK_EQ(rel.count, 1);
    TQ_CHECK(r.f.s->msg_index.old == NULL);
    TQ_CHECK_GT(released_at, 504452);
    TQ_CHECK_LT(released_at, 504452 + (1008904 * 3 / 4 - 504452) / 4);
    for (uint32_t j = 0; j < k; j++) { /* every key, through the new table alone */
        char from[32], key[32];
        snprintf(from, sizeof(from), "c%u@example.com", j % SENDERS);
        snprintf(key, sizeof(key), "m-%u", j);
        struct tq_cmd c = fx_ingest_cmd(r.tn, TQ_CHANNEL_EMAIL, from, key, r.q);
        c.now_ms = r.f.now;
        TQ_CHECK_OK(tq_state_apply(r.f.s, tq_state_lsn(r.f.s) + 1, &c, &r.f.res, NULL, &r.f.err),
                    &r.f.err);
        TQ_CHECK(r.f.res.duplicate);
        TQ_CHECK_UEQ(r.f.res.message_id, mid[j]);
        TQ_CHECK_UEQ(r.f.res.ticket_id, tid[j]);
    }
    TQ_CHECK(tq_state_check_invariants(r.f.s, &r.f.err));
    fx_free(&r.f);
    for (uint32_t i = 0; i < rel.count; i++)
        TQ_CHECK_EQ(munmap(rel.p[i], rel.len[i]), 0);
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0);
}

int main(void) {
    test_growth_with_lookups();
    test_free_mid_copy();
    test_release_hook();
    printf("test_state_msgtab: ok\n");
    return 0;
}
