-- Nonces of admitted calls, kept until their timestamp can no longer pass the window check.
-- One row per group commit: `entries` is the concatenation of 24-byte records, each a 16-byte
-- digest of (client_id, nonce) followed by its expiry (ms, big-endian i64). Appending one row
-- per batch instead of one B-tree insert per nonce keeps replay protection off the hot path.
CREATE TABLE nonce_batches (
    id         INTEGER PRIMARY KEY,
    expires_ms INTEGER NOT NULL, -- the latest expiry in the batch
    entries    BLOB    NOT NULL
);
CREATE INDEX nonce_batches_expiry ON nonce_batches (expires_ms);

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL,
    tool             TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
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
    finished_at      INTEGER
);

-- The claim walks only queued rows, in claim order; finished rows are never visited.
CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE state = 'queued';
-- The rescuer walks only running rows by lease expiry.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
-- Retention walks only finished rows by finish time.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
