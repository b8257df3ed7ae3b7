/* proto/wire.h: the protobuf wire primitives shared by the hand-written encoders
 * (client/reqenc.c for requests, server/respenc.c for responses) and decoders (server/reqdec.c,
 * client/respdec.c): wire types and base-128 varints, as protobuf-c 1.4 writes them (minimal
 * length, low 7 bits first). */
#ifndef TQ_WIRE_H
#define TQ_WIRE_H

#include <stdbool.h>
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

/* A decoder's read position in a message (or a length-delimited field): p .. end. */
struct tq_wire_rd {
    const uint8_t *p, *end;
};

/* Reads a varint of at most 10 bytes; false if truncated or over 64 bits (the decoders then
 * decline and let protobuf-c judge the message). */
static inline bool tq_wire_get_varint(struct tq_wire_rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (r->p == r->end) return false;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) return false;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

#endif
