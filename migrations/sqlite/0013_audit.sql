-- The audit trail (docs/AUDIT.md): one row per record, hash-chained. `prev` is the digest of
-- the record before (or of the checkpoint, or 64 zeros), `digest` the SHA-256 of this
-- record's canonical bytes (`audit::canonical`), both lowercase hex. Rows are only ever
-- appended (by the group commit, or by an operator's command) and deleted from the oldest
-- end by retention, which moves the checkpoint in `audit_head`.
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    tool         TEXT,
    args_digest  TEXT,
    args         TEXT,
    outcome      TEXT NOT NULL,
    count        INTEGER NOT NULL DEFAULT 1,
    request_id   TEXT,
    job_id       TEXT,
    -- The W3C trace id of the call, where one is known (filled by tracing, else NULL).
    trace_id     TEXT,
    detail       TEXT,
    prev         TEXT NOT NULL,
    digest       TEXT NOT NULL
);
-- No index on `at`: it would cost every group commit another page; retention walks the
-- primary key from the checkpoint and `export --since` filters a primary-key scan.

-- The chain's one head row: the last record (seq, digest) and the checkpoint of the pruned
-- prefix (the last pruned record's seq and digest; 0 and zeros before any pruning).
CREATE TABLE audit_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    seq            INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    pruned_seq     INTEGER NOT NULL,
    pruned_digest  TEXT NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
                               0, '0000000000000000000000000000000000000000000000000000000000000000');

-- One group commit with audit records, still one statement: the batch's nonces and jobs go
-- to `enqueue_batch` (whatever its trigger does then), its records (sealed by the writer
-- onto the head it last saw, `after_seq`) to `audit`. If another process appended since
-- (an operator's command), the head moved: the whole statement aborts and the writer
-- reseals the batch on the new head.
-- audit_json: positional rows [seq, at, kind, actor, tool, args_digest, args, outcome, count,
-- request_id, job_id, trace_id, detail, prev, digest].
CREATE VIEW enqueue_audited (nonce_expires_ms, nonce_entries, jobs_json, audit_json, after_seq,
                             last_seq, last_digest) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER enqueue_audited_insert INSTEAD OF INSERT ON enqueue_audited
BEGIN
    SELECT RAISE(ABORT, 'mcpq: audit chain head moved')
    WHERE (SELECT seq FROM audit_head WHERE id = 1) IS NOT NEW.after_seq;
    INSERT INTO enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json)
    SELECT NEW.nonce_expires_ms, NEW.nonce_entries, NEW.jobs_json
    WHERE NEW.jobs_json IS NOT NULL OR NEW.nonce_entries IS NOT NULL;
    INSERT INTO audit (seq, at, kind, actor, tool, args_digest, args, outcome, count, request_id,
                       job_id, trace_id, detail, prev, digest)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
           value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11,
           value ->> 12, value ->> 13, value ->> 14
    FROM json_each(NEW.audit_json);
    UPDATE audit_head SET seq = NEW.last_seq, digest = NEW.last_digest WHERE id = 1;
END;
