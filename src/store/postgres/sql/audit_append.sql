-- Appends sealed records ($1..$15, one array per column) and moves the head to ($16, $17),
-- in the transaction that holds the head's row lock (audit_head_lock.sql).
WITH a AS (
    INSERT INTO audit (seq, at, kind, actor, tool, args_digest, args, outcome, count, request_id,
                       job_id, trace_id, detail, prev, digest)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::int4[], $10::text[], $11::text[],
                         $12::text[], $13::text[], $14::text[], $15::text[])
)
UPDATE audit_head SET seq = $16, digest = $17 WHERE id = 1
