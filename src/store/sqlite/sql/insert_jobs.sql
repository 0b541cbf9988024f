-- ?1 = JSON array of [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped, input_responses, priority, boost, run_at, ckey, callback].
-- Each row is read once through a subquery that is not flattened (see migration 0016).
INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped, input_responses, priority, boost, ckey, callback)
SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, 'queued',
       v ->> 4, v ->> 13, v ->> 6, v ->> 5, v ->> 7, v ->> 8, v ->> 9,
       v ->> 10, v ->> 11, v ->> 12, v ->> 14, v ->> 15
FROM (SELECT value AS v FROM json_each(?1) ORDER BY key LIMIT -1) WHERE true
ON CONFLICT DO NOTHING
RETURNING id
