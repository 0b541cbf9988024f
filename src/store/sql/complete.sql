-- One statement applies a whole batch of attempt outcomes: ?1 = JSON array of
-- [id, fence, state, result, error, run_at, input_requests, request_state]. The fence and
-- state guard make a completion from a worker that lost its lease a no-op.
-- An attempt that asked for input (state 'input_required') does not count as an attempt,
-- starts a new round of answers, and ends the job cancelled if a cancel was requested
-- while it ran (the question is moot).
UPDATE jobs
SET state = CASE WHEN c.state = 'input_required' AND jobs.cancel_requested = 1 THEN 'cancelled'
                 ELSE c.state END,
    result = c.result,
    run_at = COALESCE(c.run_at, jobs.run_at),
    -- In-doubt and waiting jobs are not finished: retention must not delete them.
    finished_at = CASE WHEN c.state IN ('queued', 'in_doubt') THEN NULL
                       WHEN c.state = 'input_required' AND jobs.cancel_requested = 0 THEN NULL
                       ELSE ?2 END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    attempt = CASE WHEN c.state = 'input_required' THEN jobs.attempt - 1 ELSE jobs.attempt END,
    input_requests = c.input_requests,
    input_responses = CASE WHEN c.state = 'input_required' THEN NULL ELSE jobs.input_responses END,
    request_state = CASE WHEN c.state = 'input_required' THEN c.request_state ELSE jobs.request_state END,
    -- A requeued job keeps a pending cancel request, so its next attempt's first
    -- heartbeat still reports it (as `release` does); a finished job no longer needs it.
    cancel_requested = CASE WHEN c.state = 'queued' THEN jobs.cancel_requested ELSE 0 END,
    errors = CASE WHEN c.error IS NULL THEN jobs.errors
                  ELSE json_insert(jobs.errors, '$[#]', json_object('attempt', jobs.attempt, 'at', ?2, 'error', c.error)) END
FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, value ->> 2 AS state,
             value ->> 3 AS result, value ->> 4 AS error, value ->> 5 AS run_at,
             value ->> 6 AS input_requests, value ->> 7 AS request_state
      FROM json_each(?1)) AS c
WHERE jobs.id = c.id AND jobs.fence = c.fence AND jobs.state = 'running'
  AND (?3 = 0 OR jobs.lease_expires_at < ?2)
RETURNING jobs.id
