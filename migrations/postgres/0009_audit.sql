-- The audit trail (docs/AUDIT.md): one row per record, hash-chained. `prev` is the digest of
-- the record before (or of the checkpoint, or 64 zeros), `digest` the SHA-256 of this
-- record's canonical bytes (`audit::canonical`), both lowercase hex.
--
-- Several daemons append to ONE chain: every append (a group commit carrying records, an
-- operator's command, retention) locks the single `audit_head` row (SELECT ... FOR UPDATE)
-- in the same transaction that inserts its records and moves the head, so appends are
-- serialized and each seals onto the head the previous one committed.
CREATE TABLE audit (
    seq          int8 PRIMARY KEY,
    at           int8 NOT NULL,
    kind         text NOT NULL,
    actor        text NOT NULL,
    tool         text,
    args_digest  text,
    args         text,
    outcome      text NOT NULL,
    count        int4 NOT NULL DEFAULT 1,
    request_id   text,
    job_id       text,
    -- The W3C trace id of the call, where one is known (filled by tracing, else NULL).
    trace_id     text,
    detail       text,
    prev         text NOT NULL,
    digest       text NOT NULL
);
-- No index on `at`: it would cost every group commit another page; retention walks the
-- primary key from the checkpoint and `export --since` filters a primary-key scan.

CREATE TABLE audit_head (
    id             int2 PRIMARY KEY CHECK (id = 1),
    seq            int8 NOT NULL,
    digest         text NOT NULL,
    pruned_seq     int8 NOT NULL,
    pruned_digest  text NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
                               0, '0000000000000000000000000000000000000000000000000000000000000000');
