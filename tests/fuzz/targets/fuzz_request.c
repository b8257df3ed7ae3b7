/* tests/fuzz/targets/fuzz_request.c: libFuzzer target for the frame decoder and the request
 * dispatcher of ticketqd (proto/frame.c + server/dispatch.c).
 *
 * Goal: no byte sequence a client can send crashes the server, trips an assertion, leaks or
 * corrupts memory (ASan/UBSan), or makes it queue anything but well-formed response frames.
 * Method: one in-process server (real state, real log in a temp directory with fsync off, no
 * sockets). The input is a byte stream cut into frames exactly as the loop does
 * (tq_frame_peek with a 64 KiB limit); every complete frame goes through tq_dispatch_frame on
 * a fake connection. The first input byte picks the session: unauthenticated, the server
 * admin, or a tenant admin of tenant 1, so deep dispatch paths are reachable without the
 * fuzzer having to guess a token. Invariants checked after each input: every byte queued on
 * the connection parses as a sequence of frames that decode as ticketq.Response; staged
 * records are flushed (tq_log_sync) so the next input starts from a durable state.
 */
#include "events_codec.h"
#include "server.h"
#include "ticketq.pb-c.h"
#include "tq_assert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FRAME_MAX (64u * 1024)

static struct tq_server srv;
static struct tq_conn conn;
static uint64_t admin_token_id, tenant_admin_token_id;

static void must(enum tq_err err, const struct tq_error *error) {
    if (err != TQ_OK) {
        fprintf(stderr, "fuzz_request setup: %s\n", error->msg);
        abort();
    }
}

static void flush_log(void) {
    struct tq_error error;
    must(tq_log_sync(srv.log, &error), &error);
    tq_dispatch_prune_staged(&srv, tq_log_acked_lsn(srv.log));
    (void)tq_sub_pump(&srv, tq_log_acked_lsn(srv.log));
    srv.pend_count = 0;
}

static char fuzz_dir[64];

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_request: could not remove %s\n", fuzz_dir);
}

static void setup(void) {
    snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/tq-fuzz-XXXXXX");
    if (mkdtemp(fuzz_dir) == NULL) abort();
    atexit(remove_dir);
    const char *dir = fuzz_dir;
    tq_config_defaults(&srv.cfg);
    snprintf(srv.cfg.data_dir, sizeof(srv.cfg.data_dir), "%s", dir);
    srv.cfg.max_frame = FUZZ_FRAME_MAX;
    struct tq_log_options lopt = {.dir = dir, .fsync_mode = TQ_FSYNC_NONE, .ring_tag = 0x7e};
    struct tq_error error;
    must(tq_log_open(&lopt, &srv.log, NULL, &error), &error);
    struct tq_state_options sopt = {0};
    srv.state = tq_state_new(&sopt);
    tq_dispatch_init(&srv);
    srv.metrics = tq_metrics_new();
    srv.conn_cap = 1;
    srv.conn_high = 1;
    srv.conns = &conn;
    /* Bootstrap: a server-admin token, a tenant, a tenant-admin token, a queue. */
    struct tq_cmd cmd;
    struct tq_cmd_result res;
    uint64_t lsn;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_TOKEN_ISSUE;
    cmd.u.token_issue.role = TQ_ROLE_SERVER_ADMIN;
    cmd.u.token_issue.hash[0] = 1;
    must(tq_dispatch_run_cmd(&srv, &cmd, &res, &lsn, &error), &error);
    admin_token_id = res.token_id;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_TENANT_CREATE;
    cmd.u.tenant_create.name = (struct tq_str){"fuzz", 4};
    must(tq_dispatch_run_cmd(&srv, &cmd, &res, &lsn, &error), &error);
    uint64_t tenant = res.tenant_id;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_TOKEN_ISSUE;
    cmd.tenant_id = tenant;
    cmd.u.token_issue.role = TQ_ROLE_TENANT_ADMIN;
    cmd.u.token_issue.hash[0] = 2;
    must(tq_dispatch_run_cmd(&srv, &cmd, &res, &lsn, &error), &error);
    tenant_admin_token_id = res.token_id;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_QUEUE_CREATE;
    cmd.tenant_id = tenant;
    cmd.u.queue.name = (struct tq_str){"q", 1};
    must(tq_dispatch_run_cmd(&srv, &cmd, &res, &lsn, &error), &error);
    flush_log();
}

/* Every queued byte must be a well-formed Response frame. */
static void check_output(void) {
    size_t off = 0;
    while (off < conn.olen) {
        uint32_t plen = 0;
        enum tq_frame_status st =
            tq_frame_peek(conn.obuf + off, conn.olen - off, TQ_FRAME_BYTES_LIMIT_MAX, &plen);
        TQ_ASSERT(st == TQ_FRAME_READY);
        Ticketq__Response *resp =
            ticketq__response__unpack(NULL, plen, conn.obuf + off + TQ_FRAME_PREFIX_BYTES);
        TQ_ASSERT(resp != NULL);
        ticketq__response__free_unpacked(resp, NULL);
        off += TQ_FRAME_PREFIX_BYTES + plen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    tq_conn_init(&conn, 0, TQ_CONN_CLIENT, 0);
    conn.fd = -1;
    if (size > 0) {
        switch (data[0] % 3) {
        case 1:
            conn.session = (struct tq_session){
                .authed = true, .token_id = admin_token_id, .role = TQ_ROLE_SERVER_ADMIN};
            break;
        case 2:
            conn.session = (struct tq_session){.authed = true,
                                               .token_id = tenant_admin_token_id,
                                               .role = TQ_ROLE_TENANT_ADMIN,
                                               .tenant_id = 1};
            break;
        default: break;
        }
        data++;
        size--;
    }
    size_t off = 0;
    for (unsigned frames = 0; frames < 64; frames++) {
        uint32_t plen = 0;
        enum tq_frame_status st = tq_frame_peek(data + off, size - off, FUZZ_FRAME_MAX, &plen);
        if (st != TQ_FRAME_READY) break; /* NEED_MORE / EMPTY / TOO_LARGE: the loop's job */
        enum tq_dispatch_status ds =
            tq_dispatch_frame(&srv, &conn, data + off + TQ_FRAME_PREFIX_BYTES, plen, 0);
        if (ds == TQ_DISPATCH_DEFER) {
            tq_dispatch_flush(&srv); /* what the loop does: end the parse phase (apply a */
            flush_log();             /* run of collected Ingests), wait for the batch, retry */
            continue;
        }
        if (ds == TQ_DISPATCH_CLOSE) break;
        off += TQ_FRAME_PREFIX_BYTES + plen;
    }
    tq_dispatch_flush(&srv); /* the end of the loop's parse phase */
    check_output();
    flush_log();
    tq_conn_release_acked(&conn, tq_log_acked_lsn(srv.log), NULL, 0, 0);
    if (conn.sub.active) tq_sub_stop(&srv, &conn);
    conn.sqes_outstanding = 0;
    conn.fd = -1;
    tq_conn_release(&conn);
    return 0;
}
