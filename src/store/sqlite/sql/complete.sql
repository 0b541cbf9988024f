-- One statement applies a whole batch of attempt outcomes (successes have their own,
-- complete_succeeded.sql): ?1 = JSON array of
-- [id, fence, state, result, error, run_at]. The fence and state guard
-- make a completion from a worker that lost its lease a no-op.
UPDATE jobs
SET state = c.state,
    result = c.result,
    run_at = COALESCE(c.run_at, jobs.run_at),
    -- An in-doubt job is not finished: retention must not delete it before an operator decides.
    finished_at = CASE WHEN c.state IN ('queued', 'in_doubt') THEN NULL ELSE ?2 END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    -- A requeued job keeps a pending cancel request, so its next attempt's first
    -- heartbeat still reports it (as `release` does); a finished job no longer needs it.
    cancel_requested = CASE WHEN c.state = 'queued' THEN jobs.cancel_requested ELSE 0 END,
    errors = CASE WHEN c.error IS NULL THEN jobs.errors
                  ELSE json_insert(jobs.errors, '$[#]', json_object('attempt', jobs.attempt, 'at', ?2, 'error', c.error, 'worker', jobs.lease_owner)) END
FROM (SELECT v ->> 0 AS id, v ->> 1 AS fence, v ->> 2 AS state,
             v ->> 3 AS result, v ->> 4 AS error, v ->> 5 AS run_at
      -- Each row read once (see migration 0016).
      FROM (SELECT value AS v FROM json_each(?1) ORDER BY key LIMIT -1)) AS c
WHERE jobs.id = c.id AND jobs.fence = c.fence AND jobs.state = 'running'
  AND (?3 = 0 OR jobs.lease_expires_at < ?2)
-- The callback flag: only a batch with a job that has one writes webhook events.
RETURNING jobs.id, jobs.callback IS NOT NULL
