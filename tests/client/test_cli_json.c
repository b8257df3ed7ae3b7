/* tests/client/test_cli_json.c: the CLI's JSON writer and protobuf renderer.
 *
 * Goal: --json output is always valid JSON, whatever bytes a message body holds, and carries
 * the values of the message. Method: write documents through client/cli/json.c and render.c
 * into memory, validate them with the strict checker of json_check.h and read values back by
 * path. Strings are random byte soup (seeded: control characters, quotes, backslashes, valid
 * and invalid UTF-8); every document must validate, and valid UTF-8 input must come back
 * byte for byte after unescaping the few escapes the writer produces.
 */
#include "cli.h"
#include "json_check.h"
#include "tq_assert.h"
#include "tq_test.h"

#include <stdio.h>

/* Unescapes the writer's escapes (\" \\ \n \r \t \b \f \u00XX) in place. */
static size_t unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] != '\\') {
            s[o++] = s[i];
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case 'b': s[o++] = '\b'; break;
        case 'f': s[o++] = '\f'; break;
        case 'u': {
            char hex[5] = {s[i + 1], s[i + 2], s[i + 3], s[i + 4], 0};
            s[o++] = (char)strtol(hex, NULL, 16);
            i += 4;
            break;
        }
        default: s[o++] = e; break;
        }
    }
    s[o] = '\0';
    return o;
}

static void test_writer_random(uint64_t *rng) {
    static const char *const pieces[] = {"\"", "\\", "\n", "\x01", "\x1f", "a",
                                         "é",  "中", "😀",  "\xff", "\xc3", "\xed\xa0\x80",
                                         "/",  " ",  "\t"};
    for (int round = 0; round < 2000; round++) {
        char input[256];
        size_t n = 0;
        bool valid_utf8 = true;
        size_t count = tq_test_rand_below(rng, 20);
        for (size_t k = 0; k < count; k++) {
            size_t p = tq_test_rand_below(rng, TQ_ARRAY_COUNT(pieces));
            if (p == 9 || p == 10 || p == 11) valid_utf8 = false;
            size_t len = strlen(pieces[p]);
            memcpy(input + n, pieces[p], len);
            n += len;
        }
        input[n] = '\0';
        char *doc = NULL;
        size_t doc_len = 0;
        FILE *out = open_memstream(&doc, &doc_len);
        TQ_CHECK(out != NULL);
        struct json j;
        json_init(&j, out);
        json_object_begin(&j);
        json_key(&j, "s");
        json_string_n(&j, input, n);
        json_key(&j, input); /* keys are escaped too */
        json_array_begin(&j);
        json_u64(&j, UINT64_MAX);
        json_i64(&j, INT64_MIN);
        json_bool(&j, true);
        json_null(&j);
        json_object_begin(&j);
        json_object_end(&j);
        json_array_end(&j);
        json_object_end(&j);
        json_end_line(&j);
        fclose(out);
        if (!json_valid(doc, doc_len)) {
            fprintf(stderr, "invalid JSON: %s\n", doc);
            TQ_CHECK(false);
        }
        char back[1024];
        TQ_CHECK(json_get(doc, "s", back, sizeof(back)));
        size_t back_len = unescape(back);
        if (valid_utf8) {
            TQ_CHECK_UEQ(back_len, n);
            TQ_CHECK_MEM_EQ(back, input, n);
        }
        free(doc);
    }
}

static void test_render(void) {
    Ticketq__StatsResult st = TICKETQ__STATS_RESULT__INIT;
    uint64_t by_status[6] = {3, 2, 1, 0, 5, 8};
    st.n_tickets_by_status = 6;
    st.tickets_by_status = by_status;
    st.has_last_lsn = 1;
    st.last_lsn = 1234;
    st.has_sla_breaches = 1;
    st.sla_breaches = 2;
    Ticketq__Queue q = TICKETQ__QUEUE__INIT, *qs[1] = {&q};
    q.queue_id = 4;
    q.name = mut("vip \"queue\"\n");
    q.has_depth = 1;
    q.depth = 9;
    st.n_queue_depths = 1;
    st.queue_depths = qs;
    char *doc = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&doc, &len);
    struct json j;
    json_init(&j, out);
    cli_json_message(&j, &st.base);
    json_end_line(&j);
    fclose(out);
    TQ_CHECK(json_valid(doc, len));
    TQ_CHECK_UEQ(json_get_u64(doc, "tickets_by_status.solved"), 5);
    TQ_CHECK_UEQ(json_get_u64(doc, "tickets_by_status.new"), 3);
    TQ_CHECK_UEQ(json_get_u64(doc, "last_lsn"), 1234);
    TQ_CHECK_UEQ(json_get_u64(doc, "queue_depths.0.depth"), 9);
    char buf[64];
    TQ_CHECK(json_get(doc, "queue_depths.0.name", buf, sizeof(buf)));
    TQ_CHECK_STR_EQ(buf, "vip \\\"queue\\\"\\n");
    TQ_CHECK(!json_get(doc, "messages", buf, sizeof(buf))); /* absent optional: left out */
    free(doc);

    /* an event in text mode: ISO-8601 time, enum names */
    Ticketq__Event ev = TICKETQ__EVENT__INIT;
    ev.type = TICKETQ__EVENT_TYPE__SLA_BREACH;
    ev.lsn = 77;
    ev.has_at_ms = 1;
    ev.at_ms = 1795449600123ull; /* 2026-11-23T16:00:00.123Z */
    ev.has_sla_metric = 1;
    ev.sla_metric = TICKETQ__SLA_METRIC__FIRST_REPLY;
    ev.has_ticket_id = 1;
    ev.ticket_id = 42;
    struct cli cli;
    memset(&cli, 0, sizeof(cli));
    Ticketq__Event st_ev = TICKETQ__EVENT__INIT; /* a status change prints names */
    st_ev.type = TICKETQ__EVENT_TYPE__TICKET_UPDATED;
    st_ev.lsn = 78;
    st_ev.has_field = 1;
    st_ev.field = TICKETQ__EVENT_FIELD__FIELD_STATUS;
    st_ev.has_old_value = 1;
    st_ev.old_value = TICKETQ__STATUS__OPEN;
    st_ev.has_new_value = 1;
    st_ev.new_value = TICKETQ__STATUS__ON_HOLD;
    out = open_memstream(&doc, &len);
    FILE *saved_stdout = stdout;
    stdout = out;
    cli_print_event(&cli, &st_ev);
    stdout = saved_stdout;
    fclose(out);
    TQ_CHECK_STR_EQ(doc, "- lsn=78 ticket_updated field=status old_value=open new_value=on_hold\n");
    free(doc);
    out = open_memstream(&doc, &len);
    FILE *saved = stdout;
    stdout = out;
    cli_print_event(&cli, &ev);
    cli.json = true;
    cli_print_event(&cli, &ev);
    stdout = saved;
    fclose(out);
    char *nl = strchr(doc, '\n');
    TQ_CHECK(nl != NULL);
    *nl = '\0';
    TQ_CHECK_STR_EQ(doc, "2026-11-23T16:00:00.123Z lsn=77 sla_breach ticket_id=42 "
                         "sla_metric=first_reply");
    TQ_CHECK(json_valid(nl + 1, strlen(nl + 1)));
    TQ_CHECK(json_get(nl + 1, "type", buf, sizeof(buf)));
    TQ_CHECK_STR_EQ(buf, "sla_breach");
    TQ_CHECK_UEQ(json_get_u64(nl + 1, "at_ms"), 1795449600123ull);
    free(doc);
}

static void test_checker_rejects(void) {
    /* the checker itself must be able to fail, or the tests above prove nothing */
    const char *bad[] = {"{",  "{\"a\":1,}", "[1,]",       "{\"a\" 1}", "\"\x01\"",
                         "01", "tru",        "{\"a\":1}{", "\"\\x\"",   "[1 2]"};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(bad); i++)
        TQ_CHECK(!json_valid(bad[i], strlen(bad[i])));
    const char *good[] = {"{}", "[]", "{\"a\":[1,-2.5e3,true,null,\"\\u00e9\"]}", " 0 "};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(good); i++)
        TQ_CHECK(json_valid(good[i], strlen(good[i])));
}

static void test_durations(void) {
    uint64_t ms = 0;
    TQ_CHECK(cli_parse_ms("90", &ms) && ms == 90);
    TQ_CHECK(cli_parse_ms("30s", &ms) && ms == 30000);
    TQ_CHECK(cli_parse_ms("15m", &ms) && ms == 900000);
    TQ_CHECK(cli_parse_ms("4h", &ms) && ms == 14400000);
    TQ_CHECK(cli_parse_ms("2d", &ms) && ms == 172800000);
    TQ_CHECK(!cli_parse_ms("-1", &ms));
    TQ_CHECK(!cli_parse_ms("5w", &ms));
    TQ_CHECK(!cli_parse_ms("", &ms));
    TQ_CHECK(!cli_parse_ms("99999999999999999999", &ms));
}

int main(void) {
    uint64_t rng = tq_test_seed("test_cli_json");
    test_checker_rejects();
    test_writer_random(&rng);
    test_render();
    test_durations();
    printf("test_cli_json: ok\n");
    return 0;
}
