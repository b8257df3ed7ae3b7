/* server/respenc.h: a hand-written encoder for the common Response shapes (the hot path).
 *
 * protobuf-c's generic packer walks every field descriptor of Response (and of Ids) twice per
 * response (once for the size, once to pack) and again per nesting level; for the ~30-byte
 * answer of an Ingest that was a quarter of ticketqd's instructions (docs/performance-server.md).
 * This encoder handles Response{id, error?, lsn?, ids? | batch of such responses} and writes
 * exactly the bytes protobuf_c_message_pack writes for them (the unit test compares them byte
 * for byte on random messages); every other shape falls back to protobuf-c.
 */
#ifndef TQ_SERVER_RESPENC_H
#define TQ_SERVER_RESPENC_H

#include "ticketq.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* Packed size of resp when the fast encoder handles its shape, else 0 (a Response always
 * packs to at least 2 bytes: its required id). */
size_t tq_respenc_size(const Ticketq__Response *resp);

/* Packs resp (a shape tq_respenc_size accepted, with that size) into out[0, size). Returns the
 * bytes written, always size. */
size_t tq_respenc_pack(const Ticketq__Response *resp, uint8_t *out, size_t size);

#endif
