/* server/events_codec.h: the log record that carries a command's events (record type 2).
 *
 * Right after each command record the server appends one record of type
 * TQ_RECORD_TYPE_EVENTS holding the events that command produced, so Subscribe can catch up
 * from the log from any LSN without re-running apply. Recovery ignores these records. Byte
 * layout (all integers LEB128 varints unless noted; docs/architecture.md repeats it):
 *
 *   u8      version        TQ_EVENTS_CODEC_VERSION (1)
 *   varint  cmd_lsn        LSN of the command record the events belong to (event.lsn)
 *   varint  count          number of events (<= TQ_EVENTS_PER_RECORD_MAX)
 *   count x {
 *     u8      type         enum tq_event_type (1..14)
 *     varint  mask         which fields follow, bit i = field i in this order:
 *                          0 at_ms, 1 tenant_id, 2 ticket_id, 3 message_id, 4 customer_id,
 *                          5 agent_id, 6 queue_id, 7 field, 8 old_value (zigzag),
 *                          9 new_value (zigzag), 10 sla_metric
 *     varint  value        for each set bit, in bit order; absent fields are 0
 *   }
 */
#ifndef TQ_SERVER_EVENTS_CODEC_H
#define TQ_SERVER_EVENTS_CODEC_H

#include "state/state.h"
#include "tq_err.h"

#include <stddef.h>
#include <stdint.h>

#define TQ_RECORD_TYPE_EVENTS   2
#define TQ_EVENTS_CODEC_VERSION 1
/* A TICK can breach many clocks at once; beyond this the events are split over records. */
#define TQ_EVENTS_PER_RECORD_MAX 4096u
/* Worst-case encoded bytes of one event: type + mask + 11 varints of at most 10 bytes. */
#define TQ_EVENT_ENCODED_BYTES_MAX (1u + 2u + 11u * 10u)

/* Upper bound of the encoded size of count events. */
size_t tq_events_encoded_size_max(uint32_t count);

/* Encodes count events (all with event.lsn == cmd_lsn) into buf (cap bytes). Returns the byte
 * count, or 0 if cap is too small. count <= TQ_EVENTS_PER_RECORD_MAX. */
size_t tq_events_encode(uint64_t cmd_lsn, const struct tq_event *events, uint32_t count,
                        uint8_t *buf, size_t cap);

/* Decodes a record payload into out (cap events). Sets *count_out and *cmd_lsn_out. Returns
 * TQ_ERR_CORRUPT for malformed bytes (never asserts on them), TQ_ERR_RESOURCE_EXHAUSTED if
 * more than cap events are encoded. */
TQ_NODISCARD enum tq_err tq_events_decode(const uint8_t *buf, size_t len, uint64_t *cmd_lsn_out,
                                          struct tq_event *out, uint32_t cap, uint32_t *count_out,
                                          struct tq_error *error);

#endif
