-- Completion webhooks (docs/WEBHOOKS.md).
-- * `jobs.callback`: the URL a job's outcomes are POSTed to, checked against its client's
--   allowlist when the call was accepted; NULL for every job without one. Adding a column
--   without a default rewrites no row.
-- * `webhook_outbox`: one row per event to deliver, written (`webhook_events.sql`) in the
--   transaction of each statement that moves a job into `succeeded`, `failed`, `cancelled`
--   or `input_required` (a worker's completion, the lease rescuer, a cancel, an operator, the
--   input-wait expiry): the event is durable exactly when the state change is. Not a trigger
--   on `jobs`: any row trigger there, even one whose WHEN never holds, cost SQLite's
--   completion update about 11% of the drain rate (measured); the completion statement
--   returns whether each job has a callback instead, and only then is the outbox written.
--   The row is a snapshot of the job at the event (the job may move on, or be pruned, before
--   delivery). Deliverers lease due rows (`lease_owner`, `lease_expires_at`) so two never
--   send the same row at once and a killed deliverer's row is taken again once its lease
--   ends; `done_at` is set when the row is delivered (`delivered = 1`) or given up.
ALTER TABLE jobs ADD COLUMN callback TEXT;

CREATE TABLE webhook_outbox (
    seq              INTEGER PRIMARY KEY,
    job_id           TEXT    NOT NULL,
    client_id        TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    tool             TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    result           TEXT,
    error            TEXT,
    input_requests   TEXT,
    created_at       INTEGER NOT NULL,
    next_at          INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    last_at          INTEGER,
    done_at          INTEGER,
    delivered        INTEGER NOT NULL DEFAULT 0
);
-- Deliverers walk only rows not done, by due time.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE done_at IS NULL;
-- `mcpq jobs show`: a job's deliveries.
CREATE INDEX webhook_outbox_job ON webhook_outbox (job_id);
-- Retention walks only done rows by when they were done.
CREATE INDEX webhook_outbox_done ON webhook_outbox (done_at) WHERE done_at IS NOT NULL;


-- Positional rows: [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped, input_responses, priority, boost, run_at, ckey, callback].
DROP TRIGGER enqueue_batch_insert;
CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, batch, entries)
    SELECT NEW.nonce_expires_ms, random(), NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped, input_responses, priority, boost, ckey, callback)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, COALESCE(value ->> 13, value ->> 5), value ->> 6, value ->> 5,
           -- A daemon of an earlier release, still running during a rolling upgrade,
           -- sends shorter rows: its jobs take the defaults.
           COALESCE(value ->> 7, '1'), COALESCE(value ->> 8, 0), COALESCE(value ->> 9, 0),
           value ->> 10, COALESCE(value ->> 11, 0), COALESCE(value ->> 12, 0), value ->> 14,
           value ->> 15
    FROM json_each(NEW.jobs_json);
END;
