-- Config-declared tools (docs/TOOLS.md):
-- * `def`: the version of the tool's definition a job was accepted under ("1" for built-in
--   tools, 16 hex digits of a digest for config tools). A worker claims only jobs whose
--   (tool, def) it has, so during a rollout no job runs under a definition it was not
--   accepted with. Jobs from before this migration ran built-in tools.
-- * `on_crash`: the tool's crash policy (0 retry, 1 fail, 2 hold), fixed at acceptance so the
--   rescuer (in any process, whatever its configuration) applies the promise the caller got.
-- Both are short on purpose: every byte of a row is written at enqueue, claim and completion
-- (as text, "builtin:NAME:1" and 'retry' cost 10% of the enqueue and drain rates).
-- * `capped`: the tool has a concurrency limit (part of its definition), so only such jobs
--   enter the per-tool claim index below and other jobs pay nothing for it.
-- * state `in_doubt`: a `hold` job whose worker died mid-attempt, waiting for an operator.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt; the enqueue
-- trigger names the table and is dropped and recreated around the swap.
DROP TRIGGER enqueue_batch_insert;

CREATE TABLE jobs_v5 (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL,
    tool             TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled','in_doubt')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,
    result           TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    idempotency_key  TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    def              TEXT    NOT NULL DEFAULT '1',
    on_crash         INTEGER NOT NULL DEFAULT 0 CHECK (on_crash IN (0, 1, 2)),
    capped           INTEGER NOT NULL DEFAULT 0
);
INSERT INTO jobs_v5 (seq, id, client_id, tool, args, state, attempt, max_attempts, run_at,
                     lease_owner, lease_expires_at, fence, cancel_requested, progress, result,
                     errors, idempotency_key, created_at, started_at, finished_at, def, on_crash)
SELECT seq, id, client_id, tool, args, state, attempt, max_attempts, run_at,
       lease_owner, lease_expires_at, fence, cancel_requested, progress, result,
       errors, idempotency_key, created_at, started_at, finished_at, '1', 0
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v5 RENAME TO jobs;

CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A tool with a concurrency limit is claimed on its own (claim_tool.sql): this index finds
-- its queued jobs without walking other tools' backlog. Only capped jobs are in it: an
-- index over every queued job cost 9% of the drain rate (BENCHMARKS.md).
CREATE INDEX jobs_queued_tool ON jobs (tool, run_at, seq) WHERE state = 'queued' AND capped = 1;
-- ... and counts its running jobs without walking every running job.
CREATE INDEX jobs_running_tool ON jobs (tool) WHERE state = 'running' AND capped = 1;
-- In-doubt jobs wait for an operator; finding them must not scan the table.
CREATE INDEX jobs_in_doubt ON jobs (seq) WHERE state = 'in_doubt';

-- Positional rows: [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped].
CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, batch, entries)
    SELECT NEW.nonce_expires_ms, random(), NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, value ->> 5, value ->> 6, value ->> 5,
           -- A daemon of the previous release, still running during a rolling upgrade,
           -- sends 7-element rows: its jobs are built-in tools with the default policy.
           COALESCE(value ->> 7, '1'), COALESCE(value ->> 8, 0), COALESCE(value ->> 9, 0)
    FROM json_each(NEW.jobs_json);
END;
