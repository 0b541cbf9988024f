-- A batch of attempt outcomes: $1 ids, $2 fences, $3 new states, $4 results, $5 errors,
-- $6 run_at (retries); $7 now; $8 true for the rescuer (only leases that really expired);
-- $10 input requests and $11 request state of attempts that asked for input (those do not
-- count as attempts, start a new round of answers, and end cancelled if a cancel was
-- requested while they ran).
-- The fence and state guard make a completion from a worker that lost its lease a no-op.
-- The state each job must be in comes as a column ($9, 'running' for every row) rather than a
-- constant: with a constant, the planner may drive the join from a partial index of running
-- jobs and look up every batch row for each running job. With statistics taken when few jobs
-- ran (after a fill), that plan took seconds per batch; this way only the id index can drive.
UPDATE jobs
SET state = CASE WHEN c.state = 'input_required' AND jobs.cancel_requested THEN 'cancelled'
                 ELSE c.state END,
    result = c.result,
    -- A job that waits for input records when its wait began (jobs.input_wait_secs).
    run_at = CASE WHEN c.state = 'input_required' THEN $7 ELSE coalesce(c.run_at, jobs.run_at) END,
    finished_at = CASE WHEN c.state IN ('queued', 'in_doubt') THEN NULL
                       WHEN c.state = 'input_required' AND NOT jobs.cancel_requested THEN NULL
                       ELSE $7 END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    attempt = CASE WHEN c.state = 'input_required' THEN jobs.attempt - 1 ELSE jobs.attempt END,
    input_requests = c.requests,
    input_responses = CASE WHEN c.state = 'input_required' THEN NULL ELSE jobs.input_responses END,
    request_state = CASE WHEN c.state = 'input_required' THEN c.rstate ELSE jobs.request_state END,
    cancel_requested = CASE WHEN c.state = 'queued' THEN jobs.cancel_requested ELSE false END,
    errors = CASE WHEN c.error IS NULL THEN jobs.errors
                  ELSE jobs.errors || jsonb_build_array(jsonb_build_object(
                      'attempt', jobs.attempt, 'at', $7::int8, 'error', c.error,
                      'worker', jobs.lease_owner)) END
FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $9::text[],
            $10::text[], $11::text[])
     AS c(id, fence, state, result, error, run_at, expect, requests, rstate)
WHERE jobs.id = c.id AND jobs.fence = c.fence AND jobs.state = c.expect
  AND (NOT $8 OR jobs.lease_expires_at < $7)
RETURNING jobs.id
