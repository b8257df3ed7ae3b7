/* client/respdec.h: a fast decoder for the common Response shapes (internal to libticketq).
 *
 * protobuf-c's generic unpacker (a descriptor lookup per field, then a second pass to fill the
 * struct) and its generic free were ~45% of ticketq-bench's instructions per operation in the
 * mixed workload (docs/performance-server.md, 2026-12-03 "The mixed cell's CPU per unit"): every
 * Ingest and Claim answer is a Response{id, lsn, Ids} of a few dozen bytes. This decoder builds
 * exactly what protobuf-c builds for
 *   Response { 1 id, 3 lsn?, 12 Ids { 1..8 uint64?, 9..12 bool? }? }
 * (each field at most once, no error, no other result, no unknown fields, minimal-or-not
 * varints of at most ten bytes) with the same allocator, so tq_client_response_free and
 * protobuf_c_message_free_unpacked release it alike; anything else declines (NULL) and the
 * caller unpacks with protobuf-c, which stays the judge of malformed bytes.
 */
#ifndef TQ_CLIENT_RESPDEC_H
#define TQ_CLIENT_RESPDEC_H

#include "ticketq.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes buf[0, len) with allocator (both structs from allocator->alloc), or returns NULL if
 * the bytes are not a handled shape or an allocation failed (nothing is left allocated; the
 * caller's protobuf-c fallback then reports either). Never reads outside buf. */
Ticketq__Response *tq_respdec_decode(const uint8_t *buf, size_t len, ProtobufCAllocator *allocator);

/* Frees resp with allocator and returns true if resp is a shape the decoder above produces
 * (whoever decoded it): no error, no unknown fields, no result or Ids without token_secret.
 * Returns false and frees nothing otherwise (use protobuf_c_message_free_unpacked). */
bool tq_respdec_free(Ticketq__Response *resp, ProtobufCAllocator *allocator);

#endif
