-- An operator cancels any client's job: a queued or waiting one at once, a running one at
-- its next heartbeat (the worker stops it). ?1 id, ?2 now, ?3 the history entry.
UPDATE jobs
SET state = CASE WHEN state IN ('queued', 'input_required') THEN 'cancelled' ELSE state END,
    finished_at = CASE WHEN state IN ('queued', 'input_required') THEN ?2 ELSE finished_at END,
    cancel_requested = 1,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?2, 'error', ?3))
WHERE id = ?1 AND state IN ('queued', 'running', 'input_required')
RETURNING state
