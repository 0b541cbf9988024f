-- Attempts that asked their client for input (rare, so kept out of complete.sql, whose every
-- extra column costs the drain rate): ?1 = JSON array of [id, fence, input_requests,
-- request_state]; ?2 now. The job waits in 'input_required' with its questions; the attempt
-- does not count; the answers of a new round start empty. A cancel requested while the
-- attempt ran wins: the question is moot, the job ends cancelled. run_at records when the
-- wait began (jobs.input_wait_secs counts from it). Fenced as complete.sql.
UPDATE jobs
SET state = CASE WHEN jobs.cancel_requested = 1 THEN 'cancelled' ELSE 'input_required' END,
    finished_at = CASE WHEN jobs.cancel_requested = 1 THEN ?2 ELSE NULL END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    attempt = jobs.attempt - 1,
    run_at = ?2,
    cancel_requested = 0,
    input_requests = c.input_requests,
    input_responses = NULL,
    request_state = c.request_state
FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, value ->> 2 AS input_requests,
             value ->> 3 AS request_state
      FROM json_each(?1)) AS c
WHERE jobs.id = c.id AND jobs.fence = c.fence AND jobs.state = 'running'
RETURNING jobs.id, jobs.callback IS NOT NULL
