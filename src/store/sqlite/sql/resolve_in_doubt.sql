-- ?1 = id, ?2 = 'queued' (retry) or 'failed', ?3 = now, ?4 = the history entry's text.
-- A retried job gets one more attempt if it has none left; it is due at once.
UPDATE jobs
SET state = ?2,
    run_at = ?3,
    max_attempts = CASE WHEN ?2 = 'queued' THEN max(max_attempts, attempt + 1) ELSE max_attempts END,
    finished_at = CASE WHEN ?2 = 'failed' THEN ?3 ELSE NULL END,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?3, 'error', ?4))
WHERE id = ?1 AND state = 'in_doubt'
RETURNING id
