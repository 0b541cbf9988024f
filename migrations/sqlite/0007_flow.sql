-- Flow control (docs/FLOW.md):
-- * `priority` (0..=9, higher first) and `boost` = priority × `jobs.aging_secs` in ms, both
--   fixed at enqueue. The claim orders by `run_at - boost`: FIFO within a priority, a job of
--   a higher priority goes ahead of one at most `aging_secs` older per level, and a job that
--   has waited longer than that goes first (aging) without anything rewriting queued rows.
--   The order is an index expression, so the claim still walks one partial index in order.
-- * `run_at` (already the due time of retries) is also a scheduled job's not-before time.
-- * `paused_tools`: tools whose queues no worker claims from (durable, shared by every
--   worker on the store).
-- * `ckey`: the job's concurrency key (its client, or an argument) for a tool with a limit
--   per key; such jobs are `capped` and claimed by claim_tool_keyed.sql.
-- * `tool_rates`: a token bucket per rate-limited tool, spent in the capped claim's
--   transaction so starts per second hold across every worker.
-- Adding columns with a constant default rewrites no row.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN boost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN ckey TEXT;

DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs (run_at - boost, seq) WHERE state = 'queued';
DROP INDEX jobs_queued_tool;
CREATE INDEX jobs_queued_tool ON jobs (tool, run_at - boost, seq) WHERE state = 'queued' AND capped = 1;
-- Running jobs per key of a keyed tool, counted by the keyed claim.
CREATE INDEX jobs_running_key ON jobs (tool, ckey) WHERE state = 'running' AND capped = 1;

CREATE TABLE tool_rates (
    tool       TEXT    PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE paused_tools (
    tool      TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    paused_by TEXT    NOT NULL
) WITHOUT ROWID;

-- Positional rows: [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped, input_responses, priority, boost, run_at, ckey].
DROP TRIGGER enqueue_batch_insert;
CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, batch, entries)
    SELECT NEW.nonce_expires_ms, random(), NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped, input_responses, priority, boost, ckey)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, COALESCE(value ->> 13, value ->> 5), value ->> 6, value ->> 5,
           -- A daemon of an earlier release, still running during a rolling upgrade,
           -- sends shorter rows: its jobs take the defaults.
           COALESCE(value ->> 7, '1'), COALESCE(value ->> 8, 0), COALESCE(value ->> 9, 0),
           value ->> 10, COALESCE(value ->> 11, 0), COALESCE(value ->> 12, 0), value ->> 14
    FROM json_each(NEW.jobs_json);
END;
