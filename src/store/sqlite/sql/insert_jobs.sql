-- ?1 = JSON array of [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped, input_responses, priority, boost, run_at, ckey, callback].
INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped, input_responses, priority, boost, ckey, callback)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
       value ->> 4, value ->> 13, value ->> 6, value ->> 5, value ->> 7, value ->> 8, value ->> 9,
       value ->> 10, value ->> 11, value ->> 12, value ->> 14, value ->> 15
FROM json_each(?1) WHERE true
ON CONFLICT DO NOTHING
RETURNING id
