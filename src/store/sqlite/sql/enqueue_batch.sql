-- ?1 = latest nonce expiry, ?2 = packed nonce records or NULL, ?3 = JSON array of jobs, each
-- [id, client, tool, args, max_attempts, created_at, idempotency_key] (migrations 0002, 0003).
-- Any constraint violation aborts the whole batch.
INSERT INTO enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json) VALUES (?1, ?2, ?3)
