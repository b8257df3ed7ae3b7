/* client/reqenc.h: a fast encoder for the common Request shapes (internal to libticketq).
 *
 * protobuf-c's check, size and pack walk the message through its descriptors; for the requests
 * a gateway or an agent desk sends all day (Ingest, Claim with or without its reply, Reply)
 * they were ~15% of the load generator's CPU (docs/performance-server.md, 2026-12-03 evening),
 * which on a shared machine is CPU the server does not get. These functions write the bytes
 * protobuf-c writes for those shapes and decline everything else (size 0), so the caller falls
 * back to protobuf-c, which also reports missing required fields.
 */
#ifndef TQ_CLIENT_REQENC_H
#define TQ_CLIENT_REQENC_H

#include "ticketq.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes of req's encoding, or 0 if req is not a handled shape (the caller uses protobuf-c). */
size_t tq_reqenc_size(const Ticketq__Request *req);
/* Writes req (a handled shape: tq_reqenc_size(req) > 0) to out; returns the bytes written,
 * which equal tq_reqenc_size(req). */
size_t tq_reqenc_pack(const Ticketq__Request *req, uint8_t *out);

#endif
