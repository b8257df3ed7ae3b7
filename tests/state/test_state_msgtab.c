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

int main(void) {
    test_growth_with_lookups();
    test_free_mid_copy();
    printf("test_state_msgtab: ok\n");
    return 0;
}
