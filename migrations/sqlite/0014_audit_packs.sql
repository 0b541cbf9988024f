-- The audit trail packed (docs/AUDIT.md): one row per group commit instead of one per record,
-- as `nonce_batches` packs nonces. Unpacking every record into its own row cost the enqueue
-- path a fifth of its throughput (SQLite parsed each record's text once per column, then
-- inserted it into a B-tree); a pack is one insert of the text the writer already built.
-- * `audit_packs`: the records of one commit, `first_seq..=last_seq`, as positional rows
--   [seq, at, kind, actor, tool, args_digest, args, outcome, count, request_id, job_id,
--   trace_id, detail, prev, digest], in chain order. `max_at` is the newest record's time
--   (retention and `export --since` skip whole packs by it). Records keep their own `prev`
--   and `digest`: the chain is checked record by record, as before.
-- * `audit`: a read-only view with one row per record, for operators' SQL.
-- * `enqueue_audited` takes the pack's `max_at`; its head check is unchanged.
CREATE TABLE audit_packs (
    first_seq  INTEGER PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    max_at     INTEGER NOT NULL,
    records    TEXT NOT NULL
);

INSERT INTO audit_packs (first_seq, last_seq, max_at, records)
SELECT seq, seq, at,
       json_array(json_array(seq, at, kind, actor, tool, args_digest, args, outcome, count,
                             request_id, job_id, trace_id, detail, prev, digest))
FROM audit;

DROP TABLE audit;

CREATE VIEW audit (seq, at, kind, actor, tool, args_digest, args, outcome, count, request_id,
                   job_id, trace_id, detail, prev, digest) AS
    SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4,
           r.value ->> 5, r.value ->> 6, r.value ->> 7, r.value ->> 8, r.value ->> 9,
           r.value ->> 10, r.value ->> 11, r.value ->> 12, r.value ->> 13, r.value ->> 14
    FROM audit_packs AS p, json_each(p.records) AS r;

DROP VIEW enqueue_audited;

CREATE VIEW enqueue_audited (nonce_expires_ms, nonce_entries, jobs_json, audit_json, after_seq,
                             last_seq, last_digest, max_at) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER enqueue_audited_insert INSTEAD OF INSERT ON enqueue_audited
BEGIN
    SELECT RAISE(ABORT, 'mcpq: audit chain head moved')
    WHERE (SELECT seq FROM audit_head WHERE id = 1) IS NOT NEW.after_seq;
    INSERT INTO enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json)
    SELECT NEW.nonce_expires_ms, NEW.nonce_entries, NEW.jobs_json
    WHERE NEW.jobs_json IS NOT NULL OR NEW.nonce_entries IS NOT NULL;
    INSERT INTO audit_packs (first_seq, last_seq, max_at, records)
    VALUES (NEW.after_seq + 1, NEW.last_seq, NEW.max_at, NEW.audit_json);
    UPDATE audit_head SET seq = NEW.last_seq, digest = NEW.last_digest WHERE id = 1;
END;
