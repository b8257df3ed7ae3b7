-- bench/peers/pg/schema.sql: the PostgreSQL peer's data model (docs/performance-peers.md).
-- Same meaning as the Redis model in bench/peer_redis.c and as ticketq's state: customers found
-- by (channel, external id); tickets with status 0 open, 1 pending, 2 closed; messages in
-- order per ticket; a queue table claimed with FOR UPDATE SKIP LOCKED in (priority, seq) order;
-- the queued tickets' SLA deadlines indexed for "nearest deadline" dashboards.
-- Primary keys and indexes are created by load.sql after the bulk load (faster), not here.

CREATE TABLE customer (
    id          bigserial,
    channel     smallint NOT NULL,
    external_id text     NOT NULL,
    tier        smallint NOT NULL           -- = priority of its tickets, 0 highest
);

CREATE TABLE ticket (
    id           bigserial,
    customer_id  bigint      NOT NULL,
    queue        smallint    NOT NULL,      -- = the channel it arrived on (3 queues)
    priority     smallint    NOT NULL,
    status       smallint    NOT NULL,      -- 0 open, 1 pending, 2 closed
    assignee     integer,
    sla_deadline timestamptz NOT NULL,
    msg_count    integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE message (
    id         bigserial,
    ticket_id  bigint      NOT NULL,
    direction  smallint    NOT NULL,        -- 0 inbound, 1 outbound
    body       text        NOT NULL,
    created_at timestamptz NOT NULL
);

-- One row per queued (open, unassigned) ticket.
CREATE TABLE queue_entry (
    ticket_id    bigint      NOT NULL,
    queue        smallint    NOT NULL,
    priority     smallint    NOT NULL,
    seq          bigint      NOT NULL,      -- enqueue order
    sla_deadline timestamptz NOT NULL
);

CREATE SEQUENCE queue_seq;

-- SLA target of a priority: 1 h, 4 h, 24 h.
CREATE FUNCTION tq_sla(p integer) RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (ARRAY[interval '1 hour', interval '4 hours', interval '24 hours'])[p + 1] $$;
