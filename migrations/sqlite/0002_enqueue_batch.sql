-- One statement per group commit. Inserting one row into this view runs the trigger below,
-- which stores the batch's nonces and its jobs atomically (a statement is atomic with its
-- triggers). That saves the BEGIN / per-table INSERT / COMMIT round trips to SQLite's
-- thread that dominated a batch's time. Nothing is stored in the view itself.
CREATE VIEW enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json) AS
    SELECT NULL, NULL, NULL WHERE 0;

CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, entries)
    SELECT NEW.nonce_expires_ms, NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at)
    SELECT value ->> '$.id', value ->> '$.client', value ->> '$.tool', value ->> '$.args', 'queued',
           value ->> '$.max', value ->> '$.at', value ->> '$.key', value ->> '$.at'
    FROM json_each(NEW.jobs_json);
END;
