-- One delivery attempt's outcome, only while ?2 (the reporter) holds the lease: ?1 seq,
-- ?3 now, ?4 HTTP status or NULL, ?5 error or NULL, ?6 next attempt (ms) or NULL when done,
-- ?7 1 if delivered.
UPDATE webhook_outbox
SET attempts = attempts + 1, last_status = ?4, last_error = ?5, last_at = ?3,
    next_at = COALESCE(?6, next_at),
    done_at = CASE WHEN ?6 IS NULL THEN ?3 END,
    delivered = ?7, lease_owner = NULL, lease_expires_at = NULL
WHERE seq = ?1 AND lease_owner = ?2
