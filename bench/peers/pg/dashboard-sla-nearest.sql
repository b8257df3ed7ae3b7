-- pgbench script: dashboard read "the 50 queued tickets nearest their SLA deadline", one
-- statement.
SELECT t.id, t.customer_id, t.queue, t.priority, t.status, t.sla_deadline, t.msg_count,
       t.updated_at
  FROM queue_entry qe JOIN ticket t ON t.id = qe.ticket_id
 ORDER BY qe.sla_deadline
 LIMIT 50;
