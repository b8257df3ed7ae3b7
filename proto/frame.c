/* proto/frame.c: length-prefixed protobuf frames (layout in frame.h and docs/protocol.md).
 *
 * Kept free of I/O so the server's io_uring loop, the blocking client and the fuzz target share
 * one decoder. Every length read from the wire is checked against the limit before it is used.
 */
#include "frame.h"

#include "tq_assert.h"

enum tq_frame_status tq_frame_peek(const uint8_t *buf, size_t len, uint32_t max,
                                   uint32_t *payload_len) {
    TQ_ASSERT(max > 0);
    TQ_ASSERT(buf != NULL || len == 0);
    if (len < TQ_FRAME_PREFIX_BYTES) return TQ_FRAME_NEED_MORE;
    uint32_t n = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) | ((uint32_t)buf[2] << 8) |
                 (uint32_t)buf[3];
    *payload_len = n;
    if (n == 0) return TQ_FRAME_EMPTY;
    if (n > max) return TQ_FRAME_TOO_LARGE;
    if (len - TQ_FRAME_PREFIX_BYTES < n) return TQ_FRAME_NEED_MORE;
    return TQ_FRAME_READY;
}

void tq_frame_put_prefix(uint8_t out[TQ_FRAME_PREFIX_BYTES], uint32_t len) {
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

size_t tq_frame_size(const ProtobufCMessage *msg) {
    return TQ_FRAME_PREFIX_BYTES + protobuf_c_message_get_packed_size(msg);
}

size_t tq_frame_pack(const ProtobufCMessage *msg, uint8_t *buf, size_t cap) {
    size_t payload = protobuf_c_message_get_packed_size(msg);
    if (payload > UINT32_MAX || cap < TQ_FRAME_PREFIX_BYTES + payload) return 0;
    size_t written = protobuf_c_message_pack(msg, buf + TQ_FRAME_PREFIX_BYTES);
    TQ_ASSERT(written == payload);
    tq_frame_put_prefix(buf, (uint32_t)payload);
    return TQ_FRAME_PREFIX_BYTES + payload;
}

static void *arena_alloc(void *ctx, size_t size) {
    return tq_arena_alloc(ctx, size);
}

static void arena_free(void *ctx, void *ptr) {
    (void)ctx;
    (void)ptr; /* released with the arena */
}

ProtobufCAllocator tq_frame_allocator(struct tq_arena *arena) {
    ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = arena};
    return a;
}
