-- pgbench script: ingest as one function call (one round trip). Variables: -D ncust=N,
-- -D body_in=<300-byte body>. 10% first contacts (n in [1e9, 1e12), channel uniform), else an
-- existing customer n in 1..ncust on channel n % 3; tier (n / 3) % 3.
\set r random(0, 999)
\if :r < 100
\set n random(1000000000, 999999999999)
\set ch random(0, 2)
\else
\set n random(1, :ncust)
\set ch :n % 3
\endif
\set tier (:n / 3) % 3
SELECT tq_ingest(:ch, 'ext-' || :n, :tier, :body_in);
