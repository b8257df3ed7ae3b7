-- pgbench script: claim-reply as one function call. Variables: -D body_out=<300-byte body>.
\set q random(0, 2)
\set agent random(1, 500)
SELECT tq_claim_reply(:q, :agent, :body_out);
