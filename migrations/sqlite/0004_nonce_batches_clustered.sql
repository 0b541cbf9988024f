-- nonce_batches clustered on its expiry: one B-tree instead of a rowid table plus the
-- nonce_batches_expiry index, so a group commit dirties one page fewer (the pruning
-- and reloading queries were already range scans on the expiry). `batch` is random
-- only to tell apart batches that share an expiry; nothing looks a batch up by it.
-- The trigger of 0003 names the table, so it is dropped and recreated around the swap.
DROP TRIGGER enqueue_batch_insert;

CREATE TABLE nonce_batches_clustered (
    expires_ms INTEGER NOT NULL, -- the latest expiry in the batch
    batch      INTEGER NOT NULL,
    entries    BLOB    NOT NULL,
    PRIMARY KEY (expires_ms, batch)
) WITHOUT ROWID;
INSERT INTO nonce_batches_clustered (expires_ms, batch, entries)
SELECT expires_ms, id, entries FROM nonce_batches;
DROP TABLE nonce_batches;
ALTER TABLE nonce_batches_clustered RENAME TO nonce_batches;

CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, batch, entries)
    SELECT NEW.nonce_expires_ms, random(), NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, value ->> 5, value ->> 6, value ->> 5
    FROM json_each(NEW.jobs_json);
END;
