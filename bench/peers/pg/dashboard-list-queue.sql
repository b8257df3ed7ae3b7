-- pgbench script: dashboard read "a queue's top 50" (claim order: priority, then enqueue order)
-- with each ticket's summary fields, one statement.
\set q random(0, 2)
SELECT t.id, t.customer_id, t.queue, t.priority, t.status, t.sla_deadline, t.msg_count,
       t.updated_at
  FROM queue_entry qe JOIN ticket t ON t.id = qe.ticket_id
 WHERE qe.queue = :q
 ORDER BY qe.priority, qe.seq
 LIMIT 50;
