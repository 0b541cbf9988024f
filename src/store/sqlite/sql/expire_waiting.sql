-- Jobs left waiting for their client's input since before ?1 (the wait began at run_at,
-- set when the attempt asked) fail with the reason ?3 at ?2, as an attempt that failed for
-- good: they hold no place in the queue any more, and retention deletes them in time.
UPDATE jobs
SET state = 'failed',
    finished_at = ?2,
    input_requests = NULL,
    input_responses = NULL,
    request_state = NULL,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?2, 'error', ?3))
WHERE state = 'input_required' AND run_at < ?1
RETURNING id, callback IS NOT NULL
