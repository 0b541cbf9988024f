-- An operator cancels any client's job. $1 id, $2 now, $3 the history entry.
UPDATE jobs
SET state = CASE WHEN state IN ('queued', 'input_required') THEN 'cancelled' ELSE state END,
    finished_at = CASE WHEN state IN ('queued', 'input_required') THEN $2 ELSE finished_at END,
    cancel_requested = true,
    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $2::int8, 'error', $3::text))
WHERE id = $1 AND state IN ('queued', 'running', 'input_required')
RETURNING state
