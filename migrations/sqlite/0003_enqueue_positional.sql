-- The enqueue trigger of 0002, reading each job as a positional array
-- [id, client, tool, args, max_attempts, created_at, idempotency_key] instead of an object
-- with named keys: SQLite re-parses `value` for every `->>`, and positional lookups are
-- cheaper than key searches. Measured on the bundled SQLite 3.46, a batch of 10 jobs:
-- 115 µs with named keys, 83 µs positional (BENCHMARKS.md).
DROP TRIGGER enqueue_batch_insert;

CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, entries)
    SELECT NEW.nonce_expires_ms, NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, value ->> 5, value ->> 6, value ->> 5
    FROM json_each(NEW.jobs_json);
END;
