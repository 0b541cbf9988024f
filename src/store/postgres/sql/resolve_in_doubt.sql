-- $1 id, $2 'queued' (retry) or 'failed', $3 now, $4 the history entry's text.
UPDATE jobs
SET state = $2,
    run_at = $3,
    max_attempts = CASE WHEN $2 = 'queued' THEN greatest(max_attempts, attempt + 1) ELSE max_attempts END,
    finished_at = CASE WHEN $2 = 'failed' THEN $3 ELSE NULL END,
    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $3::int8, 'error', $4::text))
WHERE id = $1 AND state = 'in_doubt'
RETURNING id
