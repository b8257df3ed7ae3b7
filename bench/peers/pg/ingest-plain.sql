-- pgbench script: ingest as plain statements in one transaction (how applications usually send
-- it: one round trip per statement). Same inputs and logic as tq_ingest in functions.sql.
\set r random(0, 999)
\if :r < 100
\set n random(1000000000, 999999999999)
\set ch random(0, 2)
\else
\set n random(1, :ncust)
\set ch :n % 3
\endif
\set tier (:n / 3) % 3
BEGIN;
SELECT coalesce(max(id), 0) AS c_id, coalesce(max(tier), 0) AS c_tier FROM (SELECT id, tier FROM customer WHERE channel = :ch AND external_id = 'ext-' || :n FOR UPDATE) AS s \gset
\if :c_id = 0
INSERT INTO customer (channel, external_id, tier) VALUES (:ch, 'ext-' || :n, :tier) ON CONFLICT (channel, external_id) DO NOTHING;
SELECT id AS c_id, tier AS c_tier FROM customer WHERE channel = :ch AND external_id = 'ext-' || :n FOR UPDATE \gset
\endif
SELECT coalesce(max(id), 0) AS t_id, coalesce(max(status), 0) AS t_status FROM (SELECT id, status FROM ticket WHERE customer_id = :c_id AND status <> 2 ORDER BY id DESC LIMIT 1 FOR UPDATE) AS s \gset
\if :t_id = 0
INSERT INTO ticket (customer_id, queue, priority, status, sla_deadline, msg_count, created_at, updated_at) VALUES (:c_id, :ch, :c_tier, 0, now() + tq_sla(:c_tier), 0, now(), now()) RETURNING id AS t_id \gset
INSERT INTO queue_entry (ticket_id, queue, priority, seq, sla_deadline) VALUES (:t_id, :ch, :c_tier, nextval('queue_seq'), now() + tq_sla(:c_tier));
\elif :t_status = 1
UPDATE ticket SET status = 0, assignee = NULL, sla_deadline = now() + tq_sla(priority) WHERE id = :t_id;
INSERT INTO queue_entry (ticket_id, queue, priority, seq, sla_deadline) SELECT id, queue, priority, nextval('queue_seq'), sla_deadline FROM ticket WHERE id = :t_id;
\endif
INSERT INTO message (ticket_id, direction, body, created_at) VALUES (:t_id, 0, :body_in, now());
UPDATE ticket SET msg_count = msg_count + 1, updated_at = now() WHERE id = :t_id;
COMMIT;
