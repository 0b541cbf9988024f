-- A group commit with audit records, one statement (migrations 0013, 0014): ?1 latest nonce
-- expiry, ?2 packed nonces or NULL, ?3 the jobs (as enqueue_batch.sql) or NULL, ?4 the sealed
-- records as positional rows (stored as one `audit_packs` row), ?5 the head's seq they were
-- sealed onto, ?6 and ?7 the new head, ?8 the newest record's time. Aborts with
-- 'mcpq: audit chain head moved' if another process appended meanwhile.
INSERT INTO enqueue_audited (nonce_expires_ms, nonce_entries, jobs_json, audit_json, after_seq,
                             last_seq, last_digest, max_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
