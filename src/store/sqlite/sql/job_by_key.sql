-- The job a client's idempotency key names, and when it was created (a dedupe window's
-- previous bucket is reused only while its job is younger than the window).
SELECT id, created_at FROM jobs WHERE client_id = ?1 AND idempotency_key = ?2
