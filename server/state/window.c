/* server/state/window.c: the decode-ahead apply window (state.h), a ring of
 * TQ_STATE_WINDOW_RECORDS decoded records in front of tq_state_apply.
 *
 * Why: applying a large log is bound by memory latency, not instructions (docs/
 * performance-state.md). Each record needs a chain of dependent loads (hash slot -> identity ->
 * customer -> ticket -> its heap entries and their neighbours); tq_state_prefetch walks that chain
 * one link per stage, and this ring schedules the stages: stage k of a record runs when the record
 * is (TQ_STATE_PREFETCH_STAGES - k) * TQ_STATE_PREFETCH_GAP positions ahead of the one being
 * applied, so every link has a few records' time to arrive before the next stage reads it.
 *
 * Invariants: applied <= pushed <= applied + TQ_STATE_WINDOW_RECORDS; the record with sequence
 * number q lives in slot q % TQ_STATE_WINDOW_RECORDS; prefetching never changes the state, and
 * apply gets the hint stage 0 computed from the very same command (tq_state_apply_hinted's
 * contract), so a window gives the results of plain tq_state_apply record by record.
 */
#include "state_internal.h"

#include <string.h>

#define WINDOW_ARENA_BYTES (16u * 1024) /* a typical record and its arrays; grows on demand */

void tq_state_window_init(struct tq_state_window *w) {
    memset(w, 0, sizeof(*w));
    for (unsigned k = 0; k < TQ_STATE_WINDOW_RECORDS; k++)
        tq_arena_init(&w->slots[k].arena, WINDOW_ARENA_BYTES);
}

void tq_state_window_destroy(struct tq_state_window *w) {
    for (unsigned k = 0; k < TQ_STATE_WINDOW_RECORDS; k++)
        tq_arena_destroy(&w->slots[k].arena);
    memset(w, 0, sizeof(*w));
}

bool tq_state_window_full(const struct tq_state_window *w) {
    TQ_ASSERT(w->pushed - w->applied <= TQ_STATE_WINDOW_RECORDS);
    return w->pushed - w->applied == TQ_STATE_WINDOW_RECORDS;
}

bool tq_state_window_empty(const struct tq_state_window *w) {
    TQ_ASSERT(w->applied <= w->pushed);
    return w->pushed == w->applied;
}

static struct tq_state_window_slot *slot_of(struct tq_state_window *w, uint64_t q) {
    return &w->slots[q % TQ_STATE_WINDOW_RECORDS];
}

enum tq_err tq_state_window_push(struct tq_state_window *w, const struct tq_state *state,
                                 uint64_t lsn, const void *payload, size_t len,
                                 struct tq_error *error) {
    TQ_ASSERT(!tq_state_window_full(w));
    TQ_ASSERT(payload != NULL || len == 0);
    if (w->pushed > w->applied) TQ_ASSERT(lsn > slot_of(w, w->pushed - 1)->lsn);
    struct tq_state_window_slot *x = slot_of(w, w->pushed);
    tq_arena_reset(&x->arena);
    const uint8_t *bytes = len > 0 ? tq_arena_memdup(&x->arena, payload, len) : payload;
    enum tq_err err = tq_cmd_decode(bytes, len, &x->cmd, &x->arena, error);
    if (err != TQ_OK) return err;
    x->lsn = lsn;
    memset(&x->hint, 0, sizeof(x->hint));
    tq_state_prefetch(state, &x->cmd, 0, &x->hint);
    /* the later stages of the records in front of this one, nearest to apply last */
    for (unsigned st = 1; st < TQ_STATE_PREFETCH_STAGES; st++) {
        uint64_t back = (uint64_t)st * TQ_STATE_PREFETCH_GAP;
        if (w->pushed < back || w->pushed - back < w->applied) break;
        struct tq_state_window_slot *y = slot_of(w, w->pushed - back);
        tq_state_prefetch(state, &y->cmd, st, &y->hint);
    }
    w->pushed++;
    return TQ_OK;
}

enum tq_err tq_state_window_apply(struct tq_state_window *w, struct tq_state *state,
                                  struct tq_cmd_result *result, const struct tq_event_sink *events,
                                  uint64_t *lsn_out, const struct tq_cmd **cmd_out,
                                  struct tq_error *error) {
    TQ_ASSERT(!tq_state_window_empty(w));
    struct tq_state_window_slot *x = slot_of(w, w->applied);
    w->applied++;
    if (lsn_out != NULL) *lsn_out = x->lsn;
    if (cmd_out != NULL) *cmd_out = &x->cmd;
    return tq_state_apply_hinted(state, x->lsn, &x->cmd, &x->hint, result, events, error);
}
