-- pgbench script: dashboard read "a ticket with its last 20 messages", one statement (one round
-- trip, like the Redis peer's Lua call and ticketq's TicketGet{last: true, message_limit: 20}).
-- Variables: -D backlog=<tickets loaded>; ticket ids are uniform in 1..backlog (bench/workload.c).
\set t random(1, :backlog)
SELECT t.id, t.customer_id, t.queue, t.priority, t.status, t.assignee, t.sla_deadline,
       t.msg_count, t.created_at, t.updated_at, m.id AS message_id, m.direction, m.body,
       m.created_at AS message_at
  FROM ticket t
  LEFT JOIN LATERAL (SELECT id, direction, body, created_at FROM message
                      WHERE ticket_id = t.id ORDER BY id DESC LIMIT 20) m ON true
 WHERE t.id = :t;
