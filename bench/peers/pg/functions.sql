-- bench/peers/pg/functions.sql: each unit of work as one PL/pgSQL function, so a unit is one
-- round trip (PostgreSQL's fastest form). The plain-statement form of the same logic is in
-- ingest-plain.sql / claim-reply-plain.sql.

-- ingest: find or create the customer, take its newest unclosed ticket or open one (queued with
-- an SLA deadline), re-open and re-queue a pending ticket, append the inbound message.
CREATE FUNCTION tq_ingest(p_channel integer, p_external_id text, p_tier integer, p_body text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    c_id     bigint;
    c_tier   integer;
    t_id     bigint;
    t_status integer;
    t_queue  integer;
    t_prio   integer;
BEGIN
    SELECT id, tier INTO c_id, c_tier FROM customer
     WHERE channel = p_channel AND external_id = p_external_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO customer (channel, external_id, tier) VALUES (p_channel, p_external_id, p_tier)
            ON CONFLICT (channel, external_id) DO NOTHING RETURNING id, tier INTO c_id, c_tier;
        IF c_id IS NULL THEN  -- a concurrent first contact won the race
            SELECT id, tier INTO c_id, c_tier FROM customer
             WHERE channel = p_channel AND external_id = p_external_id FOR UPDATE;
        END IF;
    END IF;
    SELECT id, status, queue, priority INTO t_id, t_status, t_queue, t_prio FROM ticket
     WHERE customer_id = c_id AND status <> 2 ORDER BY id DESC LIMIT 1 FOR UPDATE;
    IF t_id IS NULL THEN
        INSERT INTO ticket (customer_id, queue, priority, status, sla_deadline, msg_count,
                            created_at, updated_at)
             VALUES (c_id, p_channel, c_tier, 0, now() + tq_sla(c_tier), 0, now(), now())
          RETURNING id INTO t_id;
        INSERT INTO queue_entry (ticket_id, queue, priority, seq, sla_deadline)
             VALUES (t_id, p_channel, c_tier, nextval('queue_seq'), now() + tq_sla(c_tier));
    ELSIF t_status = 1 THEN
        UPDATE ticket SET status = 0, assignee = NULL, sla_deadline = now() + tq_sla(t_prio)
         WHERE id = t_id;
        INSERT INTO queue_entry (ticket_id, queue, priority, seq, sla_deadline)
             VALUES (t_id, t_queue, t_prio, nextval('queue_seq'), now() + tq_sla(t_prio));
    END IF;
    INSERT INTO message (ticket_id, direction, body, created_at) VALUES (t_id, 0, p_body, now());
    UPDATE ticket SET msg_count = msg_count + 1, updated_at = now() WHERE id = t_id;
    RETURN t_id;
END $$;

-- claim-reply: take the oldest ticket of the highest priority in the queue, set it pending with
-- the agent as assignee, append the outbound reply. An empty queue is an error (invalid run).
CREATE FUNCTION tq_claim_reply(p_queue integer, p_agent integer, p_body text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t_id bigint;
BEGIN
    DELETE FROM queue_entry
     WHERE ticket_id = (SELECT ticket_id FROM queue_entry WHERE queue = p_queue
                         ORDER BY priority, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING ticket_id INTO t_id;
    IF t_id IS NULL THEN
        RAISE EXCEPTION 'EMPTY queue %', p_queue;
    END IF;
    UPDATE ticket SET status = 1, assignee = p_agent, msg_count = msg_count + 1,
                      updated_at = now()
     WHERE id = t_id;
    INSERT INTO message (ticket_id, direction, body, created_at) VALUES (t_id, 1, p_body, now());
    RETURN t_id;
END $$;
