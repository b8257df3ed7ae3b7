/* server/reqdec.h: a hand-written decoder for the hot request shapes (Ingest, Batches of
 * Ingests, and Claim, with or without its reply: the mixed workload's other 20%).
 *
 * protobuf-c's generic unpacker looks every field up in the descriptor and was, after the
 * response encoder, the largest server-owned cost per ingest (docs/performance-server.md).
 * This decoder accepts only plain, canonical encodings of Request{1 id, 2 tenant_id?, 31 Ingest
 * | 12 Batch{Request{1 id, 2 tenant_id?, 31 Ingest}...} | 34 Claim{1 agent_id?, 2 queue_ids*,
 * 3 ClaimReply{1 body, 2 set_status?, 3 internal_note?}?}} where Ingest carries fields 1..10 at
 * most once each and no attachments or tags; for anything else it declines (returns NULL) and
 * the caller unpacks with protobuf-c, which stays the judge of malformed input. For what it
 * accepts it builds the same structures protobuf-c builds (the unit test checks this on random
 * and mutated inputs).
 */
#ifndef TQ_SERVER_REQDEC_H
#define TQ_SERVER_REQDEC_H

#include "ticketq.pb-c.h"
#include "tq_alloc.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes buf[0, len) into a Request allocated in arena (strings NUL-terminated copies, as
 * protobuf-c makes them), or returns NULL when the input is not a shape this decoder handles
 * (arena space used by a declined attempt is reclaimed at the arena's next reset). Never reads
 * outside buf. */
Ticketq__Request *tq_reqdec_decode(const uint8_t *buf, size_t len, struct tq_arena *arena);

#endif
