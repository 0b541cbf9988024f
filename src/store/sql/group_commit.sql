-- One round trip per group commit: the batch's nonces (one row) and its jobs (one statement).
-- ?1 = latest nonce expiry, ?2 = packed nonce records (NULL when none), ?3 = JSON array of jobs.
BEGIN IMMEDIATE;
INSERT INTO nonce_batches (expires_ms, entries) SELECT ?1, ?2 WHERE ?2 IS NOT NULL;
INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at)
SELECT value ->> '$.id', value ->> '$.client', value ->> '$.tool', value ->> '$.args', 'queued',
       value ->> '$.max', value ->> '$.at', value ->> '$.key', value ->> '$.at'
FROM json_each(?3) WHERE true
ON CONFLICT DO NOTHING
RETURNING id;
COMMIT;
