/* tests/tq_schema_guard.h: a check for the hand-written protobuf encoders (client/reqenc.c,
 * server/respenc.c). They write the fields they know and nothing else, so a field added to one of
 * their messages in proto/ticketq.proto would be dropped without a word, and random tests that
 * only set the known fields would not notice. tq_check_fields fails on any field of descriptor d
 * (with skip_oneof: outside its oneofs) whose number is not in known[0..n). */
#ifndef TQ_SCHEMA_GUARD_H
#define TQ_SCHEMA_GUARD_H

#include "tq_test.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdio.h>

static inline void tq_check_fields(const ProtobufCMessageDescriptor *d, const unsigned *known,
                                   size_t n, bool skip_oneof) {
    size_t seen = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (skip_oneof && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
        bool found = false;
        for (size_t k = 0; k < n; k++)
            found |= known[k] == f->id;
        if (!found) {
            fprintf(stderr, "%s: field %s = %u is unknown to the hand-written encoder\n", d->name,
                    f->name, f->id);
        }
        TQ_CHECK(found);
        seen++;
    }
    TQ_CHECK_UEQ(seen, n);
}

/* TQ_CHECK_FIELDS(descriptor, skip_oneof, field numbers...) */
#define TQ_CHECK_FIELDS(d, skip_oneof, ...)                                                        \
    tq_check_fields(&(d), (const unsigned[]){__VA_ARGS__},                                         \
                    sizeof((const unsigned[]){__VA_ARGS__}) / sizeof(unsigned), (skip_oneof))

#endif
