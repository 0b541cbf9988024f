-- The PostgreSQL schema: the same jobs and nonces as SQLite (migrations/*.sql), shaped for
-- several daemons and workers on one database (docs/ARCHITECTURE.md).

-- Nonces of admitted calls, one row each, kept until their timestamp can no longer pass the
-- window check. The primary key is what makes replay protection span daemons: a nonce is
-- admitted by whichever daemon's insert commits first (enqueue.sql, admit_nonces.sql).
-- `key` is a 16-byte digest of (client_id, nonce): caller-chosen strings never reach disk.
CREATE TABLE nonces (
    key        bytea  PRIMARY KEY,
    expires_ms bigint NOT NULL
);
CREATE INDEX nonces_expiry ON nonces (expires_ms);

CREATE TABLE jobs (
    seq              bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text     NOT NULL UNIQUE,
    client_id        text     NOT NULL,
    tool             text     NOT NULL,
    args             text     NOT NULL,
    state            text     NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled','in_doubt')),
    attempt          integer  NOT NULL DEFAULT 0,
    max_attempts     integer  NOT NULL,
    run_at           bigint   NOT NULL,
    lease_owner      text,
    lease_expires_at bigint,
    fence            bigint   NOT NULL DEFAULT 0,
    cancel_requested boolean  NOT NULL DEFAULT false,
    progress         text,
    result           text,
    -- One {attempt, at, error} object per failed attempt or operator change.
    errors           jsonb    NOT NULL DEFAULT '[]',
    idempotency_key  text,
    created_at       bigint   NOT NULL,
    started_at       bigint,
    finished_at      bigint,
    def              text     NOT NULL DEFAULT '1',
    on_crash         smallint NOT NULL DEFAULT 0 CHECK (on_crash IN (0, 1, 2)),
    capped           boolean  NOT NULL DEFAULT false
)
-- Every job row is updated at claim, heartbeats and completion, then deleted after retention:
-- leave room on each page for the new row versions, and vacuum after 1% of the table has
-- changed instead of 20%, so dead tuples never pile up in front of the claim (OPERATIONS.md).
WITH (fillfactor = 80,
      autovacuum_vacuum_scale_factor = 0.01,
      autovacuum_vacuum_insert_scale_factor = 0.01,
      autovacuum_analyze_scale_factor = 0.02,
      autovacuum_vacuum_cost_delay = 0);
ALTER TABLE nonces SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

-- The claim walks only queued rows, in claim order; finished rows are never visited.
CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE state = 'queued';
-- The rescuer and the lease metrics walk only running rows (at most the workers' total
-- concurrency). The lease expiry is deliberately not indexed: a heartbeat then changes no
-- indexed column and is a HOT update (the new row version stays on its page, no index grows).
CREATE INDEX jobs_running ON jobs (seq) WHERE state = 'running';
-- Retention walks only finished rows by finish time.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A tool with a concurrency limit is claimed on its own (claim_tool.sql).
CREATE INDEX jobs_queued_tool ON jobs (tool, run_at, seq) WHERE state = 'queued' AND capped;
CREATE INDEX jobs_running_tool ON jobs (tool) WHERE state = 'running' AND capped;
CREATE INDEX jobs_in_doubt ON jobs (seq) WHERE state = 'in_doubt';
