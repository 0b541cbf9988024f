-- Jobs that ask the client for input (an MCP InputRequiredResult from a job tool's attempt,
-- docs/MCP.md "Tasks that ask for input"):
-- * state `input_required`: the job waits, unclaimable, until a client answers every request.
-- * `input_requests`: the requests still unanswered (a JSON object keyed by request id).
-- * `input_responses`: the answers of the current round, for the next attempt; set at enqueue
--   when a tool's declared questions were answered before the job existed.
-- * `request_state`: the tool's own state from the attempt that asked.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt as in 0005.
DROP TRIGGER enqueue_batch_insert;

CREATE TABLE jobs_v6 (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL,
    tool             TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled','in_doubt','input_required')),
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
    capped           INTEGER NOT NULL DEFAULT 0,
    input_requests   TEXT,
    input_responses  TEXT,
    request_state    TEXT
);
INSERT INTO jobs_v6 (seq, id, client_id, tool, args, state, attempt, max_attempts, run_at,
                     lease_owner, lease_expires_at, fence, cancel_requested, progress, result,
                     errors, idempotency_key, created_at, started_at, finished_at, def, on_crash,
                     capped)
SELECT seq, id, client_id, tool, args, state, attempt, max_attempts, run_at,
       lease_owner, lease_expires_at, fence, cancel_requested, progress, result,
       errors, idempotency_key, created_at, started_at, finished_at, def, on_crash, capped
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v6 RENAME TO jobs;

CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_queued_tool ON jobs (tool, run_at, seq) WHERE state = 'queued' AND capped = 1;
CREATE INDEX jobs_running_tool ON jobs (tool) WHERE state = 'running' AND capped = 1;
CREATE INDEX jobs_in_doubt ON jobs (seq) WHERE state = 'in_doubt';
-- Jobs waiting for input, for `mcpq stats` and metrics without a scan.
CREATE INDEX jobs_input_required ON jobs (seq) WHERE state = 'input_required';

-- Positional rows: [id, client, tool, args, max_attempts, created_at, idempotency_key, def,
-- on_crash, capped, input_responses].
CREATE TRIGGER enqueue_batch_insert INSTEAD OF INSERT ON enqueue_batch
BEGIN
    INSERT INTO nonce_batches (expires_ms, batch, entries)
    SELECT NEW.nonce_expires_ms, random(), NEW.nonce_entries WHERE NEW.nonce_entries IS NOT NULL;
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key, created_at, def, on_crash, capped, input_responses)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'queued',
           value ->> 4, value ->> 5, value ->> 6, value ->> 5,
           -- A daemon of an earlier release, still running during a rolling upgrade,
           -- sends shorter rows: its jobs take the defaults.
           COALESCE(value ->> 7, '1'), COALESCE(value ->> 8, 0), COALESCE(value ->> 9, 0),
           value ->> 10
    FROM json_each(NEW.jobs_json);
END;
