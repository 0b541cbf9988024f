-- An operator sends a failed or in-doubt job back to the queue with $4 more attempts.
-- $1 id, $2 now, $3 the history entry.
UPDATE jobs
SET state = 'queued', run_at = $2, finished_at = NULL, result = NULL, cancel_requested = false,
    lease_owner = NULL, lease_expires_at = NULL,
    max_attempts = attempt + $4,
    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $2::int8, 'error', $3::text))
WHERE id = $1 AND state IN ('failed', 'in_doubt')
RETURNING id
