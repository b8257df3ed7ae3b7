/* tests/ops/test_ops_compact.c: compaction erases for real, keeps proof, and survives kill -9.
 *
 * Goal: after `compact --erase-customer ID` no byte of that customer's messages, name or email
 * identity exists in any file of the data directory (segments, inflated segments, snapshots:
 * an earlier compaction's snapshot that still held them is gone), while verify still passes
 * (and lists exactly the redacted LSNs), replay shows tombstones and the logged
 * CUSTOMER_ERASE, and the state is the old one plus the erasure (the digest of the live state
 * with CUSTOMER_ERASE applied, also after reopening the log as a server would); a second run is
 * a no-op for the state, an unknown id changes nothing; retention drops (and archives)
 * the messages of long-closed tickets; a compaction killed at any instant leaves a directory
 * that opens and rebuilds to the same state.
 * Method: a seeded random workload interleaved with messages from one customer whose bodies
 * (and the agents' replies to them) carry a unique marker; bodies of others carry another
 * marker. Checks: a raw byte scan of every file, plus a scan of every segment's inflated image
 * (compressed segments would hide the marker from a raw scan); the verify report's redacted LSN
 * list equals the LSNs the test wrote for that customer; the digest rebuilt after compaction
 * equals the live digest plus the erasure. Crash: >= 50 cycles of copy, `ticketq-ops compact`
 * in a child, kill -9 after a random delay within the measured duration, then open read-write,
 * rebuild (the digest is the old state's or the erased state's, nothing else) and verify.
 * Invariants: erasure is physical; hash chain and state survive every crash point.
 */
#include "ops.h"
#include "ops_internal.h"
#include "ops_testlib.h"
#include "tq_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CRASH_CYCLES 50

static struct tq_str str_of(const char *s) {
    struct tq_str r = {s, (uint32_t)strlen(s)};
    return r;
}

static bool mem_has(const uint8_t *p, size_t n, const char *needle) {
    size_t m = strlen(needle);
    return n >= m && memmem(p, n, needle, m) != NULL;
}

/* Counts files under dir (recursively) whose raw bytes contain needle. */
static int raw_scan(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    TQ_CHECK(d != NULL);
    int hits = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        TQ_CHECK(stat(path, &st) == 0);
        if (S_ISDIR(st.st_mode)) {
            hits += raw_scan(path, needle);
            continue;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        struct tq_error error;
        TQ_CHECK_OK(tq_ops_file_read(path, &buf, &len, &error), &error);
        if (mem_has(buf, len, needle)) hits++;
        if (buf != NULL) tq_free(buf, len);
    }
    closedir(d);
    return hits;
}

/* Counts segments whose logical (inflated) image contains needle. */
static int image_scan(const char *dir, const char *needle) {
    char log_dir[512];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dir);
    struct tq_ops_names names;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_segment_names(log_dir, &names, &error), &error);
    int hits = 0;
    for (size_t i = 0; i < names.count; i++) {
        struct tq_ops_segment seg;
        TQ_CHECK_OK(tq_ops_segment_load(log_dir, names.names[i], &seg, &error), &error);
        if (mem_has(seg.image, seg.image_bytes, needle)) hits++;
        tq_ops_segment_free(&seg);
    }
    tq_ops_names_free(&names);
    return hits;
}

static uint64_t reply(struct ops_db *db, uint64_t ticket, const char *body, bool close) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_MESSAGE_REPLY;
    c.tenant_id = 1;
    c.actor_agent_id = 1;
    c.u.reply.ticket_id = ticket;
    c.u.reply.channel = TQ_CHANNEL_EMAIL;
    c.u.reply.body = str_of(body);
    c.u.reply.set_status = close;
    c.u.reply.status = TQ_STATUS_SOLVED;
    db->now_ms += 1000;
    return ops_db_apply(db, &c);
}

static void close_ticket(struct ops_db *db, uint64_t ticket) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_TICKET_UPDATE;
    c.tenant_id = 1;
    c.u.ticket_update.ticket_id = ticket;
    c.u.ticket_update.fields = TQ_UPDATE_STATUS;
    c.u.ticket_update.status = TQ_STATUS_CLOSED;
    db->now_ms += 1000;
    ops_db_apply(db, &c);
}

static void rebuilt_digest(const char *dir, uint8_t out[16]) {
    struct tq_state *state = NULL;
    uint64_t lsn = 0;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_state_at(dir, UINT64_MAX, &state, &lsn, &error), &error);
    tq_state_digest(state, out);
    tq_state_free(state);
}

/* The digest of the live state with CUSTOMER_ERASE(customer) applied (on a copy). */
static void erased_digest(const struct ops_db *db, uint64_t customer, uint8_t out[16]) {
    void *blob = NULL;
    size_t len = 0;
    struct tq_error error;
    TQ_CHECK_OK(tq_state_serialize(db->state, &blob, &len, &error), &error);
    struct tq_state *copy = NULL;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &copy, &error), &error);
    tq_free(blob, len);
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_CUSTOMER_ERASE;
    c.now_ms = db->now_ms;
    c.tenant_id = 1;
    c.u.customer_erase.customer_id = customer;
    TQ_CHECK_OK(tq_state_apply(copy, db->lsn_last + 1, &c, NULL, NULL, &error), &error);
    tq_state_digest(copy, out);
    tq_state_free(copy);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The messages of tickets closed before cutoff, from the live state (the retention rule). */
static int expected_retention(const struct ops_db *db, uint64_t cutoff, uint64_t *lsns, int cap) {
    struct tq_stats stats;
    tq_state_stats(db->state, 1, &stats);
    int n = 0;
    for (uint64_t t = 1; t <= stats.ticket_count; t++) {
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(db->state, 1, t, &tv) != TQ_OK) continue;
        if (tv.status != TQ_STATUS_CLOSED || tv.updated_ms >= cutoff) continue;
        struct tq_message_view mv[64];
        uint32_t got = tq_state_ticket_messages(db->state, 1, t, 0, 64, mv);
        for (uint32_t i = 0; i < got && n < cap; i++)
            lsns[n++] = mv[i].lsn;
    }
    return n;
}

/* Every message of the customer's tickets (their messages and the replies to them). */
static int expected_erasure(const struct ops_db *db, uint64_t customer, uint64_t *lsns, int cap) {
    struct tq_stats stats;
    tq_state_stats(db->state, 1, &stats);
    int n = 0;
    for (uint64_t t = 1; t <= stats.ticket_count; t++) {
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(db->state, 1, t, &tv) != TQ_OK || tv.customer_id != customer) {
            continue;
        }
        struct tq_message_view mv[64];
        uint32_t got = tq_state_ticket_messages(db->state, 1, t, 0, 64, mv);
        for (uint32_t i = 0; i < got && n < cap; i++)
            lsns[n++] = mv[i].lsn;
    }
    return n;
}

/* The verify report lists exactly the LSNs of want (any order, no duplicates in want). */
static void check_redactions(const char *dir, const uint64_t *want, int want_count) {
    struct tq_ops_verify_report *r = calloc(1, sizeof(*r));
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_verify(dir, r, &error), &error);
    TQ_CHECK_UEQ(r->redaction_count, (uint64_t)want_count);
    for (int j = 0; j < want_count; j++) {
        bool found = false;
        for (uint64_t i = 0; i < r->redaction_count; i++)
            found |= r->redacted_lsns[i] == want[j];
        if (!found) fprintf(stderr, "lsn %llu not redacted\n", (unsigned long long)want[j]);
        TQ_CHECK(found);
    }
    free(r);
}

static void copy_pristine(const char *pristine, const char *work) {
    ops_rm_rf(work);
    TQ_CHECK_EQ(ops_sh("cp -a '%s' '%s'", pristine, work), 0);
}

/* Builds the workload; returns the erased customer's id and fills its LSNs. */
static uint64_t build(struct ops_db *db, uint64_t *rng, const char *erase_marker,
                      const char *keep_marker, uint64_t *erased, int *erased_count,
                      uint64_t *old_lsns) {
    ops_gen_setup(db);
    char body[160];
    for (int round = 0; round < 5; round++) {
        ops_gen_random(db, rng, 30);
        snprintf(body, sizeof(body), "round %d: my address is %s, card 4111", round, erase_marker);
        uint64_t lsn = ops_gen_ingest(db, "erase-me@example.com", body);
        erased[(*erased_count)++] = lsn;
        snprintf(body, sizeof(body), "round %d: %s here", round, keep_marker);
        ops_gen_ingest(db, "keep-me@example.com", body);
        struct tq_message_view mv;
        struct tq_stats stats;
        tq_state_stats(db->state, 1, &stats);
        uint64_t ticket = 0;
        for (uint64_t t = 1; t <= stats.ticket_count && ticket == 0; t++) {
            struct tq_ticket_view tv;
            if (tq_state_ticket_get(db->state, 1, t, &tv) != TQ_OK || tv.message_count == 0) {
                continue;
            }
            if (tq_state_ticket_messages(db->state, 1, t, tv.message_count - 1, 1, &mv) == 1 &&
                mv.lsn == lsn) {
                ticket = t;
            }
            /* the keep-me message came after: the erase-me one may no longer be last */
            for (uint32_t k = 0; ticket == 0 && k < tv.message_count; k++) {
                if (tq_state_ticket_messages(db->state, 1, t, k, 1, &mv) == 1 && mv.lsn == lsn) {
                    ticket = t;
                }
            }
        }
        TQ_CHECK(ticket != 0);
        snprintf(body, sizeof(body), "we will ship to the address in %s", erase_marker);
        erased[(*erased_count)++] = reply(db, ticket, body, round == 4);
    }
    /* A ticket closed long ago, for retention. */
    old_lsns[0] = ops_gen_ingest(db, "old@example.com", "an old question");
    struct tq_stats stats;
    tq_state_stats(db->state, 1, &stats);
    old_lsns[1] = reply(db, stats.ticket_count, "an old answer", true);
    close_ticket(db, stats.ticket_count);
    db->now_ms += 3 * 86400000ull;
    ops_gen_random(db, rng, 20);
    struct tq_customer_view cv;
    TQ_CHECK_OK(
        tq_state_customer_find(db->state, 1, TQ_CHANNEL_EMAIL, str_of("erase-me@example.com"), &cv),
        NULL);
    return cv.customer_id;
}

int main(void) {
    uint64_t seed = tq_test_seed("test_ops_compact");
    uint64_t rng = seed;
    char pristine[256], work[300], archive[300], erase_marker[64], keep_marker[64];
    ops_tmpdir("compact", pristine, sizeof(pristine));
    snprintf(work, sizeof(work), "%s.work", pristine);
    snprintf(archive, sizeof(archive), "%s.archive", pristine);
    snprintf(erase_marker, sizeof(erase_marker), "ERASE-%016llx", (unsigned long long)seed);
    snprintf(keep_marker, sizeof(keep_marker), "KEEP-%016llx", (unsigned long long)seed);

    struct ops_db db;
    ops_db_open(&db, pristine);
#ifdef TQ_OPS_EVENTS_CODEC
    db.with_events = true; /* as ticketqd: effects of erased records stay visible */
#endif
    uint64_t erased[32], old_lsns[2];
    int erased_count = 0;
    uint64_t customer =
        build(&db, &rng, erase_marker, keep_marker, erased, &erased_count, old_lsns);
    ops_db_close_log(&db);
    uint8_t before[16], after[16];
    memcpy(before, db.digests[db.lsn_last], 16);
    TQ_CHECK_GT(raw_scan(pristine, erase_marker), 1);
    int status = -1;
    char *out = ops_capture(&status, "%s replay --data %s --jsonl | wc -l", ops_tool(), pristine);
    long events_before = atol(out);
    free(out);
    TQ_CHECK_GT(events_before, 100);

    uint8_t erased_state[16];
    erased_digest(&db, customer, erased_state);
    TQ_CHECK(memcmp(erased_state, before, 16) != 0);
    const char *email = "erase-me@example.com"; /* the customer's identity and name */

    /* ---- erasure, checked in detail ----------------------------------------------------- */
    copy_pristine(pristine, work);
    /* An unknown customer: refused, nothing written. */
    TQ_CHECK_EQ(
        ops_sh("%s compact --data %s --erase-customer 999999 > /dev/null 2>&1", ops_tool(), work),
        2);
    TQ_CHECK_EQ(ops_sh("test -z \"$(ls %s/snapshots 2> /dev/null)\"", work), 0);
    /* A first compaction without erasure leaves a snapshot that holds the customer's name and
     * identity: the erasing run must remove it. */
    out = ops_capture(&status, "%s compact --data %s", ops_tool(), work);
    TQ_CHECK_EQ(status, 0);
    free(out);
    TQ_CHECK_GT(raw_scan(work, email), 0);
    char snaps[320];
    snprintf(snaps, sizeof(snaps), "%s/snapshots", work);
    TQ_CHECK_EQ(raw_scan(snaps, email), 1);
    double t0 = now_s();
    out = ops_capture(&status, "%s compact --data %s --erase-customer %llu", ops_tool(), work,
                      (unsigned long long)customer);
    double compact_s = now_s() - t0;
    if (status != 0) fprintf(stderr, "%s", out);
    TQ_CHECK_EQ(status, 0);
    free(out);
    TQ_CHECK_EQ(raw_scan(work, erase_marker), 0);
    TQ_CHECK_EQ(image_scan(work, erase_marker), 0);
    TQ_CHECK_EQ(raw_scan(work, email), 0); /* name and identity: everywhere */
    TQ_CHECK_EQ(image_scan(work, email), 0);
    TQ_CHECK_EQ(raw_scan(work, "ERASE-ME@EXAMPLE.COM"), 0);
    TQ_CHECK_GT(image_scan(work, keep_marker), 0);
    TQ_CHECK_GT(image_scan(work, "keep-me@example.com"), 0); /* the scan does see identities */
    TQ_CHECK_GT(raw_scan(snaps, "keep-me@example.com"), 0);
    uint64_t all_erased[256];
    int all_erased_count = expected_erasure(&db, customer, all_erased, 256);
    /* the test's own messages are among them (random replies to those tickets may add more) */
    for (int j = 0; j < erased_count; j++) {
        bool found = false;
        for (int i = 0; i < all_erased_count; i++)
            found |= all_erased[i] == erased[j];
        TQ_CHECK(found);
    }
    check_redactions(work, all_erased, all_erased_count);
    rebuilt_digest(work, after);
    TQ_CHECK_MEM_EQ(after, erased_state, 16);
    /* after a restart (the log opened read-write, as the server does) too */
    struct ops_db re0;
    memset(&re0, 0, sizeof(re0));
    snprintf(re0.dir, sizeof(re0.dir), "%s", work);
    re0.lsn_last = db.lsn_last + 1;
    ops_db_reopen_log(&re0);
    ops_db_close_log(&re0);
    rebuilt_digest(work, after);
    TQ_CHECK_MEM_EQ(after, erased_state, 16);
    {
        struct tq_state *st = NULL;
        uint64_t st_lsn = 0;
        struct tq_error e0;
        TQ_CHECK_OK(tq_ops_state_at(work, UINT64_MAX, &st, &st_lsn, &e0), &e0);
        TQ_CHECK_UEQ(st_lsn, db.lsn_last + 1); /* the CUSTOMER_ERASE record */
        struct tq_customer_view cv;
        TQ_CHECK_OK(tq_state_customer_get(st, 1, customer, &cv), NULL);
        TQ_CHECK(cv.erased && cv.name.len == 0 && cv.identity_count == 0);
        TQ_CHECK_ERR(tq_state_customer_find(st, 1, TQ_CHANNEL_EMAIL, str_of(email), &cv),
                     TQ_ERR_NOT_FOUND, NULL);
        tq_state_free(st);
    }
    out = ops_capture(&status, "%s verify --data %s", ops_tool(), work);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "compressed)") != NULL && strstr(out, "(0 compressed)") == NULL);
    free(out);
    /* Replay shows the erasure, with only the id. */
    out = ops_capture(&status, "%s replay --data %s --jsonl --type customer_erased", ops_tool(),
                      work);
    TQ_CHECK_EQ(status, 0);
    char want_erase[160];
    snprintf(want_erase, sizeof(want_erase), "{\"lsn\":%llu,",
             (unsigned long long)(db.lsn_last + 1));
    TQ_CHECK(strstr(out, want_erase) != NULL);
    snprintf(want_erase, sizeof(want_erase),
             "\"cmd\":\"customer_erase\",\"event\":"
             "\"customer_erased\",\"customer\":%llu",
             (unsigned long long)customer);
    if (strstr(out, want_erase) == NULL) fprintf(stderr, "replay:\n%s", out);
    TQ_CHECK(strstr(out, want_erase) != NULL);
    TQ_CHECK(strstr(out, "\"source\":\"command\"") != NULL);
    free(out);
    /* A second run: the customer is erased already; nothing new is logged or changed. */
    out = ops_capture(&status, "%s compact --data %s --erase-customer %llu", ops_tool(), work,
                      (unsigned long long)customer);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "erased: 0 customers") != NULL && strstr(out, "1 already") != NULL);
    free(out);
    rebuilt_digest(work, after);
    TQ_CHECK_MEM_EQ(after, erased_state, 16);
    check_redactions(work, all_erased, all_erased_count);

    /* Replay: tombstones where the records were; history before them intact; --at inside the
     * window only the snapshot covers is refused, at the end it is the snapshot. */
    out = ops_capture(&status, "%s replay --data %s --jsonl --type tombstone", ops_tool(), work);
    TQ_CHECK_EQ(status, 0);
    char want[128];
    snprintf(want, sizeof(want), "{\"lsn\":%llu,", (unsigned long long)erased[0]);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "\"tombstone\":true") != NULL);
    TQ_CHECK(strstr(out, erase_marker) == NULL);
    free(out);
    TQ_CHECK_EQ(ops_sh("%s replay --data %s --at %llu > /dev/null", ops_tool(), work,
                       (unsigned long long)(erased[0] - 1)),
                0);
#ifdef TQ_OPS_EVENTS_CODEC
    /* With the server's events records every effect stays visible: the erased records' own
     * (from the record, marked) and those of the commands whose state was lost. */
    out = ops_capture(&status, "%s replay --data %s --jsonl | grep -vc '\"tombstone\":true'",
                      ops_tool(), work);
    TQ_CHECK_EQ(atol(out), events_before + 1); /* + customer_erased */
    free(out);
    out =
        ops_capture(&status, "%s replay --data %s --jsonl --lsn-from %llu --lsn-to %llu",
                    ops_tool(), work, (unsigned long long)erased[0], (unsigned long long)erased[0]);
    TQ_CHECK(strstr(out, "\"event\":\"message_added\"") != NULL);
    TQ_CHECK(strstr(out, "\"source\":\"recorded\"") != NULL);
    free(out);
#endif
    TQ_CHECK_EQ(ops_sh("%s replay --data %s --at %llu > /dev/null 2>&1", ops_tool(), work,
                       (unsigned long long)erased[0]),
                1);

    /* Backup and restore of the compacted directory (compressed segments, redactions): in
     * full, and cut before the first erased record (inside a compressed segment). */
    char backup[320], restored[320];
    snprintf(backup, sizeof(backup), "%s.backup", pristine);
    snprintf(restored, sizeof(restored), "%s.restored", pristine);
    struct tq_ops_backup_result br;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_backup(work, backup, false, &br, &error), &error);
    TQ_CHECK_UEQ(br.lsn_last, db.lsn_last + 1);
    struct tq_ops_restore_options ro;
    memset(&ro, 0, sizeof(ro));
    ro.src = backup;
    ro.data_dir = restored;
    uint64_t restored_lsn = 0;
    TQ_CHECK_OK(tq_ops_restore(&ro, &restored_lsn, &error), &error);
    rebuilt_digest(restored, after);
    TQ_CHECK_MEM_EQ(after, erased_state, 16);
    ops_rm_rf(restored);
    ro.to_lsn = erased[0] - 1; /* every command is its own batch (plus its events record) */
    TQ_CHECK_OK(tq_ops_restore(&ro, &restored_lsn, &error), &error);
    TQ_CHECK_UEQ(restored_lsn, erased[0] - 1);
    rebuilt_digest(restored, after);
    TQ_CHECK_MEM_EQ(after, db.digests[erased[0] - 1], 16);
    ops_rm_rf(restored);
    ops_rm_rf(backup);

    /* A damaged snapshot is reported, although storage itself would quietly fall back. */
    TQ_CHECK_EQ(ops_sh("printf 'Z' | dd of=%s/snapshots/%020llu.snap bs=1 seek=70 conv=notrunc "
                       "2> /dev/null",
                       work, (unsigned long long)(db.lsn_last + 1)),
                0);
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), work);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, "snapshots/") != NULL);
    free(out);

    /* ---- retention with an archive ----------------------------------------------------- */
    copy_pristine(pristine, work);
    out = ops_capture(&status, "%s compact --data %s --retention 2 --archive %s", ops_tool(), work,
                      archive);
    TQ_CHECK_EQ(status, 0);
    free(out);
    uint64_t retained[512];
    int retained_count = expected_retention(&db, db.now_ms - 2 * 86400000ull, retained, 512);
    TQ_CHECK_GE(retained_count, 2);
    check_redactions(work, retained, retained_count);
    TQ_CHECK_EQ(image_scan(work, "an old question"), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof(want), "\"lsn\":%llu,", (unsigned long long)old_lsns[i]);
        TQ_CHECK_EQ(ops_sh("grep -q '%s' %s/*.jsonl", want, archive), 0);
    }
    rebuilt_digest(work, after);
    TQ_CHECK_MEM_EQ(after, before, 16);

    /* ---- kill -9 at random points ------------------------------------------------------ */
    double window = compact_s * 0.9; /* process start-up is part of compact_s */
    int finished = 0, old_states = 0, new_states = 0;
    char id[32];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)customer);
    for (int cycle = 0; cycle < CRASH_CYCLES; cycle++) {
        copy_pristine(pristine, work);
        fflush(stdout);
        fflush(stderr);
        pid_t child = fork();
        TQ_CHECK(child >= 0);
        if (child == 0) {
            if (freopen("/dev/null", "w", stdout) == NULL) _exit(126);
            execl(ops_tool(), "ticketq-ops", "compact", "--data", work, "--erase-customer", id,
                  (char *)NULL);
            _exit(127);
        }
        usleep((useconds_t)((double)tq_test_rand_below(&rng, 1000) * window * 1000.0));
        kill(child, SIGKILL);
        int st = 0;
        TQ_CHECK_EQ(waitpid(child, &st, 0), child);
        if (WIFEXITED(st)) {
            TQ_CHECK_EQ(WEXITSTATUS(st), 0);
            finished++;
        }
        /* Restart: the log opens read-write (as the server would), ending at the last
         * command or at the CUSTOMER_ERASE after it. */
        struct tq_log_options lo;
        memset(&lo, 0, sizeof(lo));
        lo.dir = work;
        lo.segment_bytes_max = OPS_SEGMENT_BYTES; /* as ops_testlib.c writes the log */
        lo.record_bytes_max = 8 * 1024;
        lo.batch_bytes_max = 16 * 1024;
        lo.ring_tag = 1;
        struct tq_log *relog = NULL;
        TQ_CHECK_OK(tq_log_open(&lo, &relog, NULL, &error), &error);
        uint64_t next = tq_log_next_lsn(relog);
        TQ_CHECK(next == db.lsn_last + 1 || next == db.lsn_last + 2);
        tq_log_close(relog);
        /* the old state, or the erased one once CUSTOMER_ERASE is durable; never a mix */
        rebuilt_digest(work, after);
        bool old_state = memcmp(after, before, 16) == 0;
        bool new_state = memcmp(after, erased_state, 16) == 0;
        TQ_CHECK(old_state || new_state);
        if (WIFEXITED(st)) TQ_CHECK(new_state);
        old_states += old_state;
        new_states += new_state;
        struct tq_ops_verify_report *r = calloc(1, sizeof(*r));
        TQ_CHECK_OK(tq_ops_verify(work, r, &error), &error);
        free(r);
    }
    printf("test_ops_compact: %d crash cycles, %d finished before the kill (%d restarted into "
           "the old state, %d into the erased one); one compaction took %.3f s\n",
           CRASH_CYCLES, finished, old_states, new_states, compact_s);
    TQ_CHECK_LT(finished, CRASH_CYCLES); /* the kills landed during compaction */

    ops_db_close(&db);
    ops_rm_rf(work);
    ops_rm_rf(archive);
    ops_rm_rf(pristine);
    printf("test_ops_compact: ok\n");
    return 0;
}
