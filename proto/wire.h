/* proto/wire.h: the protobuf wire primitives shared by the two hand-written encoders
 * (client/reqenc.c for requests, server/respenc.c for responses): wire types and base-128
 * varints, as protobuf-c 1.4 writes them (minimal length, low 7 bits first). */
#ifndef TQ_WIRE_H
#define TQ_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum { TQ_WT_VARINT = 0, TQ_WT_LEN = 2 };

static inline size_t tq_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *tq_varint_put(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

#endif
