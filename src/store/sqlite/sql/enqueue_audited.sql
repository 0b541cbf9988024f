-- A group commit with audit records, one statement (migration 0013): ?1 latest nonce expiry,
-- ?2 packed nonces or NULL, ?3 the jobs (as enqueue_batch.sql) or NULL, ?4 the sealed
-- records as positional rows, ?5 the head's seq they were sealed onto, ?6 and ?7 the new
-- head. Aborts with 'mcpq: audit chain head moved' if another process appended meanwhile.
INSERT INTO enqueue_audited (nonce_expires_ms, nonce_entries, jobs_json, audit_json, after_seq,
                             last_seq, last_digest)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
