/* proto/frame.h: framing of the ticketq wire protocol (shared by server and client).
 *
 * A frame is a 4-byte unsigned payload length in network byte order (big-endian) followed by
 * that many bytes of one protobuf message (ticketq.Request or ticketq.Response, see
 * proto/ticketq.proto and docs/protocol.md). A length of 0 or above the receiver's limit is a
 * protocol error: the receiver answers RESOURCE_EXHAUSTED/INVALID_ARGUMENT and disconnects,
 * because the stream can no longer be trusted to be in sync.
 *
 * Decoding allocates from a caller's arena (tq_frame_allocator), so the server's request path
 * calls no malloc: the arena is reset once the request is answered.
 */
#ifndef TQ_PROTO_FRAME_H
#define TQ_PROTO_FRAME_H

#include "tq_alloc.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define TQ_FRAME_PREFIX_BYTES 4u
/* Default max payload: a 64 KiB body plus attachments and a batch of ~100 operations fit. */
#define TQ_FRAME_BYTES_DEFAULT_MAX (1u * 1024 * 1024)
/* The option may not exceed this: beyond it a single frame would pin too much memory. */
#define TQ_FRAME_BYTES_LIMIT_MAX (64u * 1024 * 1024)

enum tq_frame_status {
    TQ_FRAME_NEED_MORE = 0, /* fewer bytes than prefix + payload buffered */
    TQ_FRAME_READY = 1,     /* *payload_len bytes follow the prefix */
    TQ_FRAME_EMPTY = 2,     /* a zero length: protocol error */
    TQ_FRAME_TOO_LARGE = 3, /* length above max: protocol error */
};

/* Looks at buffered bytes: is a whole frame there? Sets *payload_len whenever the prefix is
 * complete (also for TOO_LARGE, so the error can name the size). */
enum tq_frame_status tq_frame_peek(const uint8_t *buf, size_t len, uint32_t max,
                                   uint32_t *payload_len);

/* Writes the 4-byte prefix for a payload of len bytes. */
void tq_frame_put_prefix(uint8_t out[TQ_FRAME_PREFIX_BYTES], uint32_t len);

/* Packs msg as one frame (prefix + payload) into buf. Returns the total bytes written, or 0 if
 * cap is too small (tq_frame_size tells what is needed). */
size_t tq_frame_size(const ProtobufCMessage *msg);
size_t tq_frame_pack(const ProtobufCMessage *msg, uint8_t *buf, size_t cap);

/* A protobuf-c allocator that takes memory from arena and never frees (the arena is reset as a
 * whole). The returned struct points at arena; keep both alive while decoding. */
ProtobufCAllocator tq_frame_allocator(struct tq_arena *arena);

#endif
