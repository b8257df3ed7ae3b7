-- pgbench script: claim-reply as plain statements in one transaction. An empty queue makes
-- \gset fail (no row), which pgbench reports as a failed client: the run is then invalid.
\set q random(0, 2)
\set agent random(1, 500)
BEGIN;
DELETE FROM queue_entry WHERE ticket_id = (SELECT ticket_id FROM queue_entry WHERE queue = :q ORDER BY priority, seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ticket_id AS t_id \gset
UPDATE ticket SET status = 1, assignee = :agent, msg_count = msg_count + 1, updated_at = now() WHERE id = :t_id;
INSERT INTO message (ticket_id, direction, body, created_at) VALUES (:t_id, 1, :body_out, now());
COMMIT;
