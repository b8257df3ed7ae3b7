-- bench/peers/pg/load.sql: builds the initial state of docs/performance-peers.md in the current
-- database. psql variables: ncust, backlog, body (the 300-byte inbound body), dir (this dir).
--   psql -v ncust=100000 -v backlog=1500000 -v body="$(cat peer-body-in.txt)" -v dir=. -f load.sql
-- Tables are created and filled in one transaction: with wal_level=minimal PostgreSQL then
-- skips WAL for the bulk data. Keys and indexes are built afterwards (one sort each).
\set ON_ERROR_STOP on
BEGIN;
\ir schema.sql
\ir functions.sql

INSERT INTO customer (id, channel, external_id, tier)
SELECT i, i % 3, 'ext-' || i, (i / 3) % 3 FROM generate_series(1, :ncust::bigint) AS i;

INSERT INTO ticket (id, customer_id, queue, priority, status, assignee, sla_deadline, msg_count,
                    created_at, updated_at)
SELECT t, c, c % 3, (c / 3) % 3, 0, NULL, ts + tq_sla(((c / 3) % 3)::integer), 1, ts, ts
  FROM (SELECT t, ((t - 1) % :ncust) + 1 AS c,
               timestamptz '2024-12-01 00:00:00+00' + t * interval '1 millisecond' AS ts
          FROM generate_series(1, :backlog::bigint) AS t) AS s;

INSERT INTO message (id, ticket_id, direction, body, created_at)
SELECT t, t, 0, :'body', timestamptz '2024-12-01 00:00:00+00' + t * interval '1 millisecond'
  FROM generate_series(1, :backlog::bigint) AS t;

INSERT INTO queue_entry (ticket_id, queue, priority, seq, sla_deadline)
SELECT id, queue, priority, id, sla_deadline FROM ticket;
COMMIT;

ALTER TABLE customer ADD PRIMARY KEY (id);
ALTER TABLE customer ADD UNIQUE (channel, external_id);
ALTER TABLE ticket ADD PRIMARY KEY (id);
CREATE INDEX ticket_customer_open ON ticket (customer_id, id DESC) WHERE status <> 2;
ALTER TABLE message ADD PRIMARY KEY (id);
CREATE INDEX message_ticket ON message (ticket_id, id);
ALTER TABLE queue_entry ADD PRIMARY KEY (ticket_id);
CREATE INDEX queue_entry_claim ON queue_entry (queue, priority, seq);
CREATE INDEX queue_entry_sla ON queue_entry (sla_deadline);

SELECT setval('customer_id_seq', :ncust);
SELECT setval('ticket_id_seq', :backlog);
SELECT setval('message_id_seq', :backlog);
SELECT setval('queue_seq', :backlog);
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
VACUUM (ANALYZE, FREEZE);
