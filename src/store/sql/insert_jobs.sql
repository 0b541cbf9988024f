INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at)
SELECT value ->> '$.id', value ->> '$.client', value ->> '$.tool', value ->> '$.args', 'queued',
       value ->> '$.max', value ->> '$.at', value ->> '$.key', value ->> '$.at'
FROM json_each(?1) WHERE true
ON CONFLICT DO NOTHING
RETURNING id
