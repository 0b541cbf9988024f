-- An operator sends a failed or in-doubt job back to the queue, due now, with ?4 more
-- attempts on top of those it used (attempts are not reset: the history stays whole).
-- ?1 id, ?2 now, ?3 the history entry.
UPDATE jobs
SET state = 'queued', run_at = ?2, finished_at = NULL, result = NULL, cancel_requested = 0,
    lease_owner = NULL, lease_expires_at = NULL,
    max_attempts = attempt + ?4,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?2, 'error', ?3))
WHERE id = ?1 AND state IN ('failed', 'in_doubt')
RETURNING id
